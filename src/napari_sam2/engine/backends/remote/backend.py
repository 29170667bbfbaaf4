"""The remote backend: encode on a ``napari-sam2 serve`` machine, decode here.

``Segmenter(server="http://gpu-lab-1:8765", token=...)`` uses it.  :func:`connect` asks the
server what it runs (``/v1/info``), downloads the decoder weights (SAM 2: prompt encoder +
mask decoder, a few MB) and checks their SHA-256 against the one announced, so a laptop
needs no checkpoint at all.  Each :meth:`RemoteBackend.encode` first asks whether the
server already holds the plane's embedding (by the image's SHA-256, no upload), and sends
the image only when it does not.  Every click then decodes locally: no round trip.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..base import check_sam_input
from ..classical import ClassicalBackend
from .client import ServerClient
from .errors import ServerProtocolError, WireError
from .wire import EMBEDDING_DTYPES, image_digest, pack, pack_image, unpack, unpack_embedding

SERVER_ENV = "NAPARI_SAM2_SERVER"
TOKEN_ENV = "NAPARI_SAM2_TOKEN"


class RemoteBackend:
    """A :class:`~napari_sam2.engine.backends.base.Predictor` whose encoder runs on a
    server; ``decoder`` is a local backend that predicts from the embeddings."""

    name = "remote"

    def __init__(self, client: ServerClient, info: dict, decoder, *, embedding_dtype="fp16"):
        self.client = client
        self.info = info
        self.decoder = decoder
        self.embedding_dtype = embedding_dtype
        self.device = getattr(decoder, "device", "cpu")  # where the decoder runs
        self.server_hits = 0  # encodes the server answered from its cache
        self.uploads = 0

    def describe(self) -> dict:
        i = self.info
        where = f"server {i.get('name', self.client.host)}: {i.get('device_name', '?')} " \
                f"{i.get('precision', '')}".rstrip()  # fmt: skip
        return {
            "backend": self.name,
            "server": self.client.url,
            "server_backend": i.get("backend"),
            "model": i.get("model"),
            "model_id": i.get("model_id"),
            "device": where,
            "precision": i.get("precision"),
            "image_size": i.get("image_size"),
            "random_weights": bool(i.get("random_weights")),
            "embedding_dtype": self.embedding_dtype,
            "decoder_device": str(self.device),
        }

    def cache_key(self) -> tuple:
        # no URL: replicas of one model behind a load balancer give the same embeddings
        return (self.name, self.info.get("model_id"), self.embedding_dtype)

    # ------------------------------------------------------------------ encode
    def encode(self, image: np.ndarray, cancel=None) -> dict:
        """The embedding of ``image`` from the server; ``cancel`` abandons the request."""
        check_sam_input(image)
        digest = image_digest(image)
        meta = {
            "model_id": self.info.get("model_id"),
            "embedding_dtype": self.embedding_dtype,
            "sha256": digest,
            "shape": list(image.shape),
        }
        body = self.client.request(
            "POST", "/v1/encode", pack({}, {**meta, "lookup": True}), cancel=cancel,
            not_found_ok=True,
        )  # fmt: skip
        if body is None:  # not on the server yet: send the image
            self.uploads += 1
            body = self.client.request(
                "POST", "/v1/encode", pack_image(image, meta), cancel=cancel
            )
        else:
            self.server_hits += 1
        try:
            emb, reply = unpack_embedding(body, device=self.device)
        except WireError as e:
            raise ServerProtocolError(f"Malformed reply from {self.client.url}: {e}") from None
        if reply.get("sha256") != digest or tuple(emb.get("orig_hw", ())) != image.shape[:2]:
            raise ServerProtocolError(f"{self.client.url} answered for another image.")
        return emb

    def encode_batch(self, images, cancel=None) -> list[dict]:
        """Several planes as concurrent requests (the server batches or queues them)."""
        images = list(images)
        with ThreadPoolExecutor(max_workers=min(4, max(1, len(images)))) as pool:
            return list(pool.map(lambda im: self.encode(im, cancel=cancel), images))

    def predict(self, embedding, objects, *, multimask: bool | None = None):
        return self.decoder.predict(embedding, objects, multimask=multimask)


def _decoder_for(client: ServerClient, info: dict, device):
    """The local decoding backend of the server's ``info`` (``backend`` and ``decoder``)."""
    kind, dec = info.get("backend"), info.get("decoder")
    if not isinstance(dec, dict):
        raise ServerProtocolError("The server's /v1/info has no decoder description.")
    if kind == "classical":
        params = dec.get("params") or {}
        return ClassicalBackend(float(params.get("sigma", 1.0)),
                                bool(params.get("split_touching", True)))  # fmt: skip
    if kind == "sam2":
        from .sam2_decoder import RemoteSam2Decoder, build_decoder

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
        return RemoteSam2Decoder(net, spec["image_size"], device)
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
        decoder = _decoder_for(client, info, dev)
    except BaseException:
        client.close()
        raise
    return RemoteBackend(client, info, decoder, embedding_dtype=embedding_dtype)


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
