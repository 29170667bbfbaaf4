"""The encoding half of every remote backend: ``encode`` asks a ``napari-sam2 serve``.

Each :meth:`RemoteBackend.encode` first asks whether the server already holds the plane's
embedding (by the image's SHA-256, no upload), and sends the image only when it does not.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..base import check_sam_input
from .client import ServerClient
from .errors import ServerProtocolError, WireError
from .wire import image_digest, pack, pack_image, unpack_embedding


class RemoteBackend:
    """The encoding half of a remote backend: :meth:`encode` asks the server.

    A remote backend is this class mixed into the local backend that decodes the server's
    embeddings (:class:`RemoteClassicalBackend`; ``RemoteSam2Backend`` of
    :mod:`.sam2_decoder`), so prompts, segment everything, tiling and projection
    propagation treat it exactly as that backend — only the encoder is elsewhere.
    ``name`` stays the decoding backend's; ``describe()["backend"]`` is ``"remote"``.
    """

    def _init_remote(self, client: ServerClient, info: dict, embedding_dtype: str) -> None:
        self.client = client
        self.info = info
        self.embedding_dtype = embedding_dtype
        if not hasattr(self, "device"):
            self.device = "cpu"  # where the decoder runs
        self.server_hits = 0  # encodes the server answered from its cache
        self.uploads = 0

    def describe(self) -> dict:
        i = self.info
        where = f"server {i.get('name', self.client.host)}: {i.get('device_name', '?')} " \
                f"{i.get('precision', '')}".rstrip()  # fmt: skip
        return {
            "backend": "remote",
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
        return ("remote", self.info.get("model_id"), self.embedding_dtype)

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
