"""The HTTP side of the remote backend: bounded, retried, cancellable requests.

httpx (a maintained client with separate connect/read timeouts) is imported when a client
is made.  Every request has a bounded time: ``connect_timeout`` to connect, ``timeout``
between two bytes of the reply.  Requests are idempotent (an encode is addressed by the
image's content), so a dropped connection, a refused connection or a busy server (HTTP
429/503) is retried ``retries`` times with exponential backoff before a typed error
(:mod:`.errors`) is raised.  With ``cancel=`` (a ``threading.Event``) the caller gets
:class:`~napari_sam2.engine.errors.Cancelled` within ~50 ms of setting it, the server is
asked to drop the job, and the abandoned reply is discarded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from urllib.parse import urlsplit

from ...errors import Cancelled, MissingExtraError
from .errors import (
    ServerBusyError,
    ServerError,
    ServerProtocolError,
    ServerTimeoutError,
    ServerUnavailableError,
    error_for,
)
from .wire import DEFAULT_MAX_BYTES

log = logging.getLogger(__name__)
RETRY_STATUS = (429, 503)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _httpx():
    try:
        import httpx
    except ImportError:
        raise MissingExtraError(
            "Connecting to a napari-sam2 server needs httpx: pip install 'napari-sam2[server]'."
        ) from None
    return httpx


class ServerClient:
    """Requests to one ``napari-sam2 serve`` at ``url`` with a bearer ``token``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_reply_bytes: int = DEFAULT_MAX_BYTES + (1 << 20),
    ):
        httpx = _httpx()
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"Server address {url!r} is not an http(s)://host:port URL.")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.host = parts.hostname
        if token and parts.scheme == "http" and not is_loopback(parts.hostname):
            log.warning(
                "The token goes to %s unencrypted (http): use https (docs/server.md, TLS).",
                parts.hostname,
            )
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_reply_bytes = int(max_reply_bytes)
        self.client_id = uuid.uuid4().hex  # fair-queue identity of this client
        headers = {"X-Client-Id": self.client_id}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
        )
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="napari-sam2-remote")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    # ------------------------------------------------------------------ requests
    def get_json(self, path: str) -> dict:
        body = self.request("GET", path)
        try:
            out = json.loads(body)
        except ValueError:
            raise ServerProtocolError(f"{self.url}{path} did not answer JSON.") from None
        if not isinstance(out, dict):
            raise ServerProtocolError(f"{self.url}{path} did not answer a JSON object.")
        return out

    def request(self, method: str, path: str, content: bytes | None = None, *, cancel=None,
                not_found_ok: bool = False) -> bytes | None:  # fmt: skip
        """The reply's body, retried as the module says; None for a 404 when
        ``not_found_ok``.  With ``cancel`` the request runs in a worker thread."""
        rid = uuid.uuid4().hex
        if cancel is None:
            return self._with_retries(method, path, content, rid, not_found_ok)
        fut = self._pool.submit(self._with_retries, method, path, content, rid, not_found_ok)
        while True:
            if cancel.is_set():
                fut.cancel()
                self._pool.submit(self._cancel_remote, rid)
                raise Cancelled("Cancelled: the server request was abandoned.")
            if wait([fut], timeout=0.05).done:
                return fut.result()

    def _cancel_remote(self, rid: str) -> None:
        with contextlib.suppress(Exception):  # best effort: the server may be gone
            self._http.post(f"/v1/cancel/{rid}", timeout=2.0)

    def _with_retries(self, method, path, content, rid, not_found_ok):
        httpx = _httpx()
        last: ServerError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, body, retry_after = self._once(method, path, content, rid)
            except httpx.TimeoutException as e:
                if isinstance(e, (httpx.ConnectTimeout, httpx.PoolTimeout)):
                    last = ServerUnavailableError(f"Cannot connect to {self.url} (timed out).")
                    continue
                raise ServerTimeoutError(
                    f"{self.url} did not answer in time ({type(e).__name__}): the server may "
                    "be overloaded or stuck; nothing was changed."
                ) from None
            except httpx.TransportError as e:  # refused, reset, dropped mid-reply
                last = ServerUnavailableError(
                    f"Server {self.url} unreachable or disconnected ({type(e).__name__}); "
                    f"tried {attempt + 1} time(s). Is `napari-sam2 serve` running there?"
                )
                continue
            if status < 300:
                return body
            if status == 404 and not_found_ok:
                return None
            err = self._error(status, body)
            if status in RETRY_STATUS:
                last = err
                if retry_after:
                    time.sleep(min(retry_after, 2.0))
                continue
            raise err
        raise last if last is not None else ServerBusyError("The server is busy.")

    def _once(self, method, path, content, rid):
        """One request: ``(status, body, retry_after)``; the body is read up to the cap."""
        headers = {"X-Request-Id": rid}
        if content is not None:
            headers["Content-Type"] = "application/octet-stream"
        with self._http.stream(method, path, content=content, headers=headers) as r:
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_reply_bytes:
                raise ServerProtocolError(f"The server's reply ({declared} bytes) is over "
                                          "the client's limit.")  # fmt: skip
            chunks, n = [], 0
            for chunk in r.iter_bytes():
                n += len(chunk)
                if n > self.max_reply_bytes:
                    raise ServerProtocolError("The server's reply is over the client's limit.")
                chunks.append(chunk)
            retry = r.headers.get("retry-after", "")
            return r.status_code, b"".join(chunks), float(retry) if retry.isdigit() else 0.0

    def _error(self, status: int, body: bytes) -> ServerError:
        try:
            err = json.loads(body)["error"]
            code, message = str(err["code"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            return error_for("", f"HTTP {status} from {self.url} (no error details).", status)
        return error_for(code, f"Server {self.host}: {message}", status)
