"""What a local backend offers to remote clients (used by ``napari-sam2 serve``).

The server holds an ordinary backend (SAM 2 or classical); here, inside
``engine/backends``, is the one place that knows how each kind is decoded by a client:
the description in ``/v1/info`` and the decoder weights of ``/v1/decoder``.
"""

from __future__ import annotations

import hashlib

from ...errors import ModelError
from ..classical import ClassicalBackend
from .wire import pack


def model_id(backend) -> str:
    """A short, stable id of the backend's embeddings (its cache key, hashed): clients
    name it in each request, so a server restarted with another model is noticed."""
    return hashlib.sha256(repr(backend.cache_key()).encode()).hexdigest()[:24]


def _sam2_backend(backend):
    from ..sam2 import Sam2Backend

    return backend if isinstance(backend, Sam2Backend) else None


def serving_kind(backend) -> str:
    """``sam2`` or ``classical``; a backend remote clients cannot decode is refused."""
    if isinstance(backend, ClassicalBackend):
        return "classical"
    if _sam2_backend(backend) is not None:
        return "sam2"
    raise ModelError(
        f"The {getattr(backend, 'name', type(backend).__name__)} backend cannot be served: "
        "use --backend sam2 (or classical)."
    )


def decoder_message(backend) -> bytes | None:
    """The SAM 2 decoder's weights as a wire message (None for the classical backend)."""
    sam = _sam2_backend(backend)
    if sam is None:
        return None
    from .sam2_decoder import export_decoder

    arrays, spec = export_decoder(sam.loaded.model)
    return pack(arrays, {"spec": spec}, level=3)


def client_info(backend, decoder: bytes | None) -> dict:
    """The model part of ``/v1/info``: what it is and how a client decodes its embeddings."""
    kind = serving_kind(backend)
    d = dict(backend.describe())
    info = {
        "backend": kind,
        "model": d.get("model"),
        "model_id": model_id(backend),
        "precision": d.get("precision"),
        "image_size": d.get("image_size"),
        "random_weights": bool(d.get("random_weights")),
        "checkpoint_sha256": d.get("checkpoint_sha256"),
    }
    if kind == "classical":
        info["decoder"] = {"params": {"sigma": backend.sigma,
                                      "split_touching": backend.split_touching}}  # fmt: skip
    else:
        info["decoder"] = {"sha256": hashlib.sha256(decoder).hexdigest(), "nbytes": len(decoder)}
    return info
