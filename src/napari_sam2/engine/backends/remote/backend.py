"""The remote backend: encode on a ``napari-sam2 serve`` machine, decode here.

``Segmenter(server="http://gpu-lab-1:8765", token=...)`` uses it.  :func:`connect` asks the
server what it runs (``/v1/info``), downloads the decoder weights (SAM 2: prompt encoder +
mask decoder, a few MB) and checks their SHA-256 against the one announced, so a laptop
needs no checkpoint at all.  Every click then decodes locally: no round trip.
"""

from __future__ import annotations

import hashlib
import os

from ..classical import ClassicalBackend
from .client import ServerClient
from .encoder import RemoteBackend
from .errors import ServerProtocolError, WireError
from .wire import EMBEDDING_DTYPES, unpack

SERVER_ENV = "NAPARI_SAM2_SERVER"
TOKEN_ENV = "NAPARI_SAM2_TOKEN"


class RemoteClassicalBackend(RemoteBackend, ClassicalBackend):
    """The classical backend of a server: thresholds from its encodes, decoded here."""

    def __init__(self, client: ServerClient, info: dict, *, embedding_dtype: str = "fp16"):
        params = (info.get("decoder") or {}).get("params") or {}
        ClassicalBackend.__init__(
            self, float(params.get("sigma", 1.0)), bool(params.get("split_touching", True))
        )
        self._init_remote(client, info, embedding_dtype)


def _backend_for(client: ServerClient, info: dict, device, embedding_dtype: str):
    """The remote backend of the server's ``info`` (``backend`` and ``decoder``)."""
    kind, dec = info.get("backend"), info.get("decoder")
    if not isinstance(dec, dict):
        raise ServerProtocolError("The server's /v1/info has no decoder description.")
    if kind == "classical":
        return RemoteClassicalBackend(client, info, embedding_dtype=embedding_dtype)
    if kind == "sam2":
        from .sam2_decoder import RemoteSam2Backend, build_decoder

        body = client.request("GET", "/v1/decoder")
        if hashlib.sha256(body).hexdigest() != dec.get("sha256"):
            raise ServerProtocolError(
                "The decoder weights from the server do not match their announced SHA-256."
            )
        try:
            arrays, meta, _ = unpack(body)
        except WireError as e:
            raise ServerProtocolError(f"Malformed decoder weights: {e}") from None
        spec = meta.get("spec") or {}
        net = build_decoder(arrays, spec, device)
        backend = RemoteSam2Backend(net, spec["image_size"], device)
        backend._init_remote(client, info, embedding_dtype)
        return backend
    raise ServerProtocolError(f"The server runs a {kind!r} backend this client cannot decode.")


def connect(
    server: str | None = None,
    token: str | None = None,
    *,
    device: str = "auto",
    embedding_dtype: str = "fp16",
    timeout: float = 120.0,
    retries: int = 3,
) -> RemoteBackend:
    """A :class:`RemoteBackend` on ``server`` (default ``$NAPARI_SAM2_SERVER``) with
    ``token`` (default ``$NAPARI_SAM2_TOKEN``).  ``device``: where the decoder runs (``auto``
    = CPU: it is small).  ``embedding_dtype``: ``fp16``/``bf16`` (half the bytes) or
    ``fp32`` (masks exactly those of the server's own model)."""
    server = server or os.environ.get(SERVER_ENV)
    if not server:
        raise ServerProtocolError(f"No server address: pass server= or set ${SERVER_ENV}.")
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if embedding_dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"embedding_dtype must be one of {EMBEDDING_DTYPES}.")
    dev = "cpu" if device in (None, "auto") else device
    client = ServerClient(server, token, timeout=timeout, retries=retries)
    try:
        info = client.get_json("/v1/info")
        return _backend_for(client, info, dev, embedding_dtype)
    except BaseException:
        client.close()
        raise


def wants_server(server, backend: str, checkpoint, random_weights: bool) -> bool:
    """Whether a ``Segmenter`` goes to a server: ``server=`` given, or
    ``$NAPARI_SAM2_SERVER`` set while nothing asks for a local model (``backend="auto"``,
    no checkpoint, no random weights).  ``server=False`` turns the variable off."""
    if server is False:
        return False
    if server:
        return True
    return (
        bool(os.environ.get(SERVER_ENV))
        and backend == "auto"
        and checkpoint is None
        and not random_weights
    )
