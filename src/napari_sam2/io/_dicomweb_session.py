"""Private: the DICOMweb connection of :mod:`napari_sam2.io.dicomweb`.

URL parsing (``dicomweb://`` addresses), authentication (HTTP basic or a bearer token),
TLS verification, the typed errors, and the translation of ``requests``' exceptions into
them. Credentials live only in the ``requests`` session: they are never logged, never put
into an exception message, never returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TOKEN_ENV = "NAPARI_SAM2_DICOMWEB_TOKEN"
PASSWORD_ENV = "NAPARI_SAM2_DICOMWEB_PASSWORD"
DICOMWEB_MISSING = (
    "DICOMweb needs dicomweb-client: pip install 'napari-sam2[pacs]' "
    "(or pip install dicomweb-client) in napari's Python environment"
)


class DicomWebError(OSError):
    """A DICOMweb request failed; the message names the server's reason."""


class DicomWebAuthError(DicomWebError, PermissionError):
    """The server refused the credentials (HTTP 401/403)."""


class DicomWebConnectionError(DicomWebError, ConnectionError):
    """The server cannot be reached, or went away during a transfer."""


class DicomWebRefusedError(DicomWebError):
    """The server refused to store an instance (STOW-RS).

    ``reason`` is the server's own reason; ``seg`` the refused SEG (a pydicom dataset),
    which can still be saved locally with ``seg.save_as(path)``.
    """

    def __init__(self, message: str, *, reason: str = "", seg=None):
        super().__init__(message)
        self.reason = reason
        self.seg = seg


class DicomWebCancelled(Exception):
    """A retrieval was cancelled by the caller; nothing was opened."""


@dataclass(frozen=True)
class Address:
    """A DICOMweb service root and, optionally, a study and series in it."""

    url: str
    study: str | None = None
    series: str | None = None


def parse_address(address: str) -> Address:
    """``dicomweb://host/root[/studies/UID[/series/UID]]`` (HTTPS), ``dicomweb+http://``
    (plain HTTP), or an ``http(s)://`` service root with the same optional tail.

    Credentials in the address are refused: they would end up in logs and histories.
    """
    parts = urlsplit(address)
    scheme = {"dicomweb": "https", "dicomweb+https": "https", "dicomweb+http": "http"}.get(
        parts.scheme, parts.scheme
    )
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"not a DICOMweb address: {parts.scheme}://{parts.hostname or ''}… (use "
            "dicomweb://host/root, dicomweb+http://host/root or an http(s):// URL)"
        )
    if parts.username or parts.password:
        raise ValueError(
            "do not put credentials in the DICOMweb address: give a user name and a "
            f"password or token (file or ${PASSWORD_ENV}/${TOKEN_ENV}) instead"
        )
    segments = [s for s in parts.path.split("/") if s]
    study = series = None
    if "studies" in segments:
        at = segments.index("studies")
        tail = segments[at + 1 :]
        segments = segments[:at]
        study = tail[0] if tail else None
        if len(tail) >= 3 and tail[1] == "series":
            series = tail[2]
    root = urlunsplit((scheme, parts.netloc, "/".join([""] + segments), "", ""))
    return Address(root.rstrip("/"), study, series)


def read_secret(*, file: str | os.PathLike | None = None, env: str | None = None) -> str | None:
    """A password or token from a file (first line) or an environment variable."""
    if file is not None:
        text = Path(file).read_text(encoding="utf-8").strip().splitlines()
        return text[0].strip() if text else None
    if env is not None:
        return os.environ.get(env) or None
    return None


def _bearer(token: str):
    import requests

    class BearerAuth(requests.auth.AuthBase):
        def __call__(self, request):
            request.headers["Authorization"] = f"Bearer {token}"
            return request

        def __repr__(self) -> str:  # never shows the token
            return "BearerAuth(***)"

    return BearerAuth()


def make_client(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
    timeout: float = 30.0,
):
    """A ``dicomweb_client.DICOMwebClient`` on a session holding the credentials."""
    try:
        import requests
        from dicomweb_client.api import DICOMwebClient
    except ImportError as exc:
        raise ImportError(DICOMWEB_MISSING) from exc
    address = parse_address(url)
    if address.study is not None:
        raise ValueError("give the service root as url, and the study/series UIDs apart")
    if token and username:
        raise ValueError("give either a user name and password or a bearer token, not both")
    session = requests.Session()
    if token:
        session.auth = _bearer(token)
    elif username:
        session.auth = requests.auth.HTTPBasicAuth(username, password or "")
    session.verify = os.fspath(ca_bundle) if ca_bundle else verify
    client = DICOMwebClient(address.url, session=session, timeout=timeout)
    # dicomweb-client retries failed requests (refused connections too) 5 times with
    # waits of 2, 4, 8, 16 s: a server that went away would take 30 s per request to
    # report. Three attempts, 1 and 2 s apart, still ride out a brief network glitch.
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=500)
    return client


def translate(exc: BaseException, what: str) -> DicomWebError:
    """``requests``' exception → a typed error naming the server's reason (no secrets)."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        reason = server_reason(exc.response)
        if status in (401, 403):
            return DicomWebAuthError(
                f"{what}: the server refused the credentials (HTTP {status}{reason})"
            )
        return DicomWebError(f"{what}: HTTP {status}{reason}")
    if isinstance(exc, requests.exceptions.SSLError):
        return DicomWebConnectionError(
            f"{what}: TLS certificate not trusted ({type(exc).__name__}); give the "
            "hospital's CA bundle (ca_bundle / --ca-bundle)"
        )
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return DicomWebConnectionError(
            f"{what}: the server cannot be reached or went away ({type(exc).__name__})"
        )
    return DicomWebError(f"{what}: {type(exc).__name__}: {exc}")


def server_reason(response) -> str:
    """``": <reason>"`` from a reply's reason phrase and (short) text body, or ``""``."""
    parts = [str(response.reason or "").strip()]
    try:
        body = response.text.strip()
    except Exception:  # an undecodable body says nothing useful
        body = ""
    if body and len(body) < 500:
        parts.append(" ".join(body.split()))
    text = " — ".join(p for p in parts if p)
    return f": {text}" if text else ""


def request_errors() -> tuple:
    """The exceptions a request can raise (to catch and :func:`translate`)."""
    import requests

    return (requests.RequestException,)
