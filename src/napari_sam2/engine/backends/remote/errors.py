"""Typed errors of the remote backend and the wire format.

They sit in the :class:`~napari_sam2.engine.errors.NapariSam2Error` hierarchy, so callers
(the widget, the CLI) that already catch it report a server problem in one line, with the
labels untouched.  The server sends each error as JSON ``{"error": {"code", "message"}}``;
:func:`error_for` turns such a reply back into the class of its ``code``.
"""

from __future__ import annotations

from types import MappingProxyType

from ...errors import ModelError, NapariSam2Error


class WireError(NapariSam2Error, ValueError):
    """A message is not a valid napari-sam2 wire message (bad magic, header, dtype, shape,
    checksum or size): nothing of it is used."""


class ServerError(NapariSam2Error):
    """The encoding server could not do what was asked."""

    code = "server_error"
    status = 500


class ServerUnavailableError(ServerError, ConnectionError):
    """The server cannot be reached (down, restarting, wrong address) or dropped the
    connection; the request was retried with backoff before this was raised."""

    code = "unavailable"
    status = 503


class ServerTimeoutError(ServerUnavailableError, TimeoutError):
    """The server did not answer within the client's time limit."""

    code = "timeout"
    status = 504


class ServerBusyError(ServerError):
    """The server's queue is full or this token sent too many requests (HTTP 429/503):
    try again a little later."""

    code = "busy"
    status = 429


class ServerAuthError(ServerError, PermissionError):
    """Missing or wrong token (HTTP 401)."""

    code = "unauthorized"
    status = 401


class ServerRequestError(ServerError, ValueError):
    """The server refused the request as malformed or too large (HTTP 400/413/422)."""

    code = "bad_request"
    status = 400


class ServerModelChangedError(ServerError, ModelError):
    """The server now runs another model than the one this client connected to (it was
    restarted with other settings): reconnect (a new Segmenter) to use it."""

    code = "model_changed"
    status = 409


class ServerProtocolError(ServerError):
    """The server's reply is malformed (not a wire message, bad checksum, wrong sizes)."""

    code = "bad_reply"
    status = 502


_BY_CODE = MappingProxyType(
    {
        **{
            cls.code: cls
            for cls in (
                ServerError,
                ServerUnavailableError,
                ServerTimeoutError,
                ServerBusyError,
                ServerAuthError,
                ServerRequestError,
                ServerModelChangedError,
                ServerProtocolError,
            )
        },
        "too_large": ServerRequestError,
        "queue_full": ServerBusyError,
        "rate_limited": ServerBusyError,
        "cancelled": ServerError,
    }
)


def error_for(code: str, message: str, status: int) -> ServerError:
    """The typed error of a server reply's ``code`` (by HTTP status when the code is new)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        if status == 401:
            cls = ServerAuthError
        elif status in (429, 503):
            cls = ServerBusyError
        elif 400 <= status < 500:
            cls = ServerRequestError
        else:
            cls = ServerError
    return cls(message)
