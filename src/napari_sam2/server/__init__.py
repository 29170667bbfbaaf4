"""``napari-sam2 serve``: encode planes on a GPU machine for napari-sam2 clients.

FastAPI + uvicorn (extra ``napari-sam2[server]``).  The server holds an ordinary engine
backend, a fair encode queue (:mod:`.scheduler`), the shared embedding caches and bearer
tokens (:mod:`.auth`); clients decode locally (``Segmenter(server=...)``,
:mod:`napari_sam2.engine.backends.remote`).  See docs/server.md.
"""

from .app import ServerSettings, create_app
from .auth import ServerConfigError, TokenSet, check_bind, load_tokens
from .runner import build, serve
from .scheduler import EncodeScheduler, Limits

__all__ = [
    "EncodeScheduler",
    "Limits",
    "ServerConfigError",
    "ServerSettings",
    "TokenSet",
    "build",
    "check_bind",
    "create_app",
    "load_tokens",
    "serve",
]
