"""Build and run a server: backend + scheduler + app under uvicorn (one process, one model).

Scale by running several of these (one per GPU or machine) behind an HTTP load balancer,
sharing one ``--cache-dir``: see docs/server.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..engine.backends.factory import cache_dtype_for
from ..engine.cache.disk import DiskCache
from .app import ServerSettings, create_app
from .auth import TokenSet, check_bind
from .scheduler import EncodeScheduler, Limits

log = logging.getLogger(__name__)


@dataclass
class Built:
    app: object
    scheduler: EncodeScheduler


def device_name(backend) -> str:
    """``NVIDIA H100 80GB HBM3 (cuda:0)``, ``cpu``...: for clients' status lines."""
    dev = str(getattr(backend, "device", "cpu"))
    if dev.startswith("cuda"):
        try:
            import torch

            return f"{torch.cuda.get_device_name(dev)} ({dev})"
        except Exception:  # noqa: BLE001 - a name is only a label
            return dev
    return dev


def build(
    backend,
    *,
    tokens: list[str] | None,
    limits: Limits | None = None,
    settings: ServerSettings | None = None,
    cache_dir=None,
    cache_max_bytes: int = 20 * 1024**3,
    memory_bytes: int = 4 * 1024**3,
) -> Built:
    """The app and its started scheduler (``tokens`` None: no authentication)."""
    settings = settings or ServerSettings()
    if not settings.device_name:
        settings.device_name = device_name(backend)
    disk = DiskCache(cache_dir, max_bytes=cache_max_bytes) if cache_dir else None
    scheduler = EncodeScheduler(
        backend, limits or Limits(), memory_bytes=memory_bytes, disk_cache=disk,
        store_dtype=cache_dtype_for(backend, "auto"),
    ).start()  # fmt: skip
    app = create_app(backend, scheduler, tokens=None if tokens is None else TokenSet(tokens),
                     settings=settings)  # fmt: skip
    return Built(app, scheduler)


def serve(built: Built, *, host: str, port: int, auth: bool, ssl_certfile=None,
          ssl_keyfile=None, log_level: str = "info") -> None:  # fmt: skip
    """Run uvicorn until interrupted; without ``auth`` only on a loopback address."""
    import uvicorn

    check_bind(host, auth)
    try:
        uvicorn.run(
            built.app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
            log_level=log_level, server_header=False, proxy_headers=True,
        )  # fmt: skip
    finally:
        built.scheduler.stop()
