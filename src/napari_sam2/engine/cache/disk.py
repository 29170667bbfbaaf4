"""Never encode twice: a persistent on-disk cache of plane embeddings.

One ``.npz`` file per embedding (written with numpy, read with ``allow_pickle=False``:
no pickle anywhere).  The file name is a hash of the in-memory cache key, i.e. of

- the plane's content signature and its normalisation (exact contrast limits or the
  percentiles' values) — :meth:`PlaneSource.plane_key`;
- the backend's key: model size/config, the checkpoint's sha256 (computed once at load),
  device, precision and input size — ``backend.cache_key()``.

Writes are atomic (a temporary file in the same folder, then :func:`os.replace`), so two
processes can share a folder: a half-written file is never read under the final name.  A
file that cannot be read (corrupt, truncated, wrong layout) is deleted and counts as a miss.
The folder is bounded by ``max_bytes``: after a write the least recently used files (by
access time, refreshed on every hit) are removed.

Models built with random weights have no checkpoint hash: they are never cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ENV_VAR = "NAPARI_SAM2_DISK_CACHE"
DEFAULT_MAX_BYTES = 20 * 1024**3
_FORMAT = 1


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/napari-sam2/embeddings`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "napari-sam2" / "embeddings"


def resolve(setting) -> DiskCache | None:
    """``Segmenter(disk_cache=...)``: a path, True (user cache dir), False (off), a
    :class:`DiskCache`, or None (then ``$NAPARI_SAM2_DISK_CACHE``: a folder, ``1`` for the
    user cache dir, unset/empty/``0`` for off)."""
    if isinstance(setting, DiskCache):
        return setting
    if setting is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env.lower() in ("", "0", "false", "off", "no"):
            return None
        setting = True if env.lower() in ("1", "true", "on", "yes") else env
    if setting is False:
        return None
    return DiskCache(default_dir() if setting is True else setting)


def _is_tensor(x) -> bool:
    return hasattr(x, "detach") and hasattr(x, "dtype") and hasattr(x, "device")


def _to_numpy(t) -> tuple[np.ndarray, str]:
    dtype = str(t.dtype)  # e.g. torch.bfloat16: numpy has none, stored as float32
    t = t.detach().cpu()
    if dtype == "torch.bfloat16":
        t = t.float()
    return t.numpy(), dtype


def _to_tensor(a: np.ndarray, dtype: str, device):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).to(
        device=device, dtype=getattr(torch, dtype.split(".")[-1])
    )


class DiskCache:
    """Embeddings in ``folder`` as ``<hash>.npz``, at most ``max_bytes`` in all."""

    def __init__(self, folder, max_bytes: int = DEFAULT_MAX_BYTES):
        self.folder = Path(folder).expanduser()
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.evictions = 0

    # ------------------------------------------------------------------ keys
    @staticmethod
    def file_key(key, backend) -> str | None:
        """Hex digest of ``key`` for a file name; None when not persistable."""
        describe = getattr(backend, "describe", dict)()
        if describe.get("random_weights"):
            return None  # the key holds id(model): meaningless in another process
        return hashlib.sha256(repr((_FORMAT, key)).encode()).hexdigest()

    def path(self, fkey: str) -> Path:
        return self.folder / f"{fkey}.npz"

    # ------------------------------------------------------------------ read
    def get(self, key, backend, stats=None):
        """The stored embedding (tensors on the backend's device), or None (a miss)."""
        fkey = self.file_key(key, backend)
        if fkey is None:
            return None
        path = self.path(fkey)
        emb = None
        if path.is_file():
            try:
                emb = self._read(path, getattr(backend, "device", "cpu"))
                os.utime(path)  # LRU by access time, whatever the mount's atime policy
            except Exception:  # corrupt/truncated/foreign: drop it, encode again
                path.unlink(missing_ok=True)
                emb = None
        if emb is None:
            self.misses += 1
        else:
            self.hits += 1
        if stats is not None:
            name = "disk_hits" if emb is not None else "disk_misses"
            setattr(stats, name, getattr(stats, name, 0) + 1)
        return emb

    @staticmethod
    def _read(path: Path, device) -> dict:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            if meta.get("format") != _FORMAT:
                raise ValueError("unknown disk-cache format")
            emb: dict = {}
            for name, spec in meta["entries"].items():
                kind = spec["kind"]
                if kind == "tensor":
                    emb[name] = _to_tensor(z[name], spec["dtype"], device)
                elif kind == "tensor_list":
                    emb[name] = [
                        _to_tensor(z[f"{name}.{i}"], d, device)
                        for i, d in enumerate(spec["dtype"])
                    ]
                elif kind == "array":
                    emb[name] = np.array(z[name])
                else:  # json scalars / tuples
                    v = spec["value"]
                    emb[name] = tuple(v) if kind == "tuple" else v
            return emb

    # ----------------------------------------------------------------- write
    def put(self, key, emb: dict, backend) -> bool:
        """Store ``emb``; False when it cannot be (random weights, unknown value types)."""
        fkey = self.file_key(key, backend)
        if fkey is None or not isinstance(emb, dict):
            return False
        arrays: dict[str, np.ndarray] = {}
        entries: dict[str, dict] = {}
        for name, v in emb.items():
            if _is_tensor(v):
                arrays[name], dtype = _to_numpy(v)
                entries[name] = {"kind": "tensor", "dtype": dtype}
            elif isinstance(v, (list, tuple)) and v and all(_is_tensor(t) for t in v):
                dtypes = []
                for i, t in enumerate(v):
                    arrays[f"{name}.{i}"], d = _to_numpy(t)
                    dtypes.append(d)
                entries[name] = {"kind": "tensor_list", "dtype": dtypes}
            elif isinstance(v, np.ndarray) and v.dtype != object:
                arrays[name] = v
                entries[name] = {"kind": "array"}
            elif isinstance(v, (int, float, str, bool, np.integer, np.floating)) or v is None:
                entries[name] = {"kind": "value", "value": v.item() if hasattr(v, "item") else v}
            elif isinstance(v, tuple) and all(isinstance(x, (int, np.integer)) for x in v):
                entries[name] = {"kind": "tuple", "value": [int(x) for x in v]}
            else:
                return False
        arrays["__meta__"] = np.array(json.dumps({"format": _FORMAT, "entries": entries}))
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{fkey}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self.path(fkey))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.writes += 1
        self.evict()
        return True

    # ----------------------------------------------------------------- evict
    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []

    @property
    def nbytes(self) -> int:
        return sum(_stat(p)[1] for p in self.files())

    def evict(self) -> int:
        """Remove least recently used files until the folder fits ``max_bytes``."""
        stats = [(p, *_stat(p)) for p in self.files()]
        stats.sort(key=lambda s: s[1])  # oldest access first
        total = sum(s[2] for s in stats)
        removed = 0
        for p, _, size in stats:
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
            removed += 1
        # stale temporaries of crashed writers (older than an hour)
        for tmp in self.folder.glob(".*.tmp") if self.folder.is_dir() else ():
            if _stat(tmp)[0] < time.time() - 3600:
                tmp.unlink(missing_ok=True)
        self.evictions += removed
        return removed

    def clear(self) -> None:
        for p in self.files():
            p.unlink(missing_ok=True)


def _stat(p: Path) -> tuple[float, int]:
    try:
        st = p.stat()
    except OSError:  # removed by another process meanwhile
        return (0.0, 0)
    return (max(st.st_atime, st.st_mtime), st.st_size)
