"""Encode on a ``napari-sam2 serve`` machine, decode locally (docs/server.md).

``connect(server, token)`` gives a :class:`RemoteBackend`; ``Segmenter(server=...)`` uses it.
The wire format (:mod:`.wire`) is shared with the server (``napari_sam2.server``); the errors
(:mod:`.errors`) are part of the engine's error hierarchy.  httpx and zstandard (extra
``napari-sam2[server]``) are imported only when they are used.
"""

from .backend import (
    SERVER_ENV,
    TOKEN_ENV,
    RemoteBackend,
    RemoteClassicalBackend,
    connect,
    wants_server,
)
from .errors import (
    ServerAuthError,
    ServerBusyError,
    ServerError,
    ServerModelChangedError,
    ServerProtocolError,
    ServerRequestError,
    ServerTimeoutError,
    ServerUnavailableError,
    WireError,
)

__all__ = [
    "SERVER_ENV",
    "TOKEN_ENV",
    "RemoteBackend",
    "RemoteClassicalBackend",
    "ServerAuthError",
    "ServerBusyError",
    "ServerError",
    "ServerModelChangedError",
    "ServerProtocolError",
    "ServerRequestError",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "WireError",
    "connect",
    "wants_server",
]
