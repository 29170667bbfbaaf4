"""Which backend a :class:`~napari_sam2.engine.Segmenter` runs: SAM 2, transformers or the
weight-free classical one, and the cache precision that goes with it."""

from __future__ import annotations

import logging

from ..model.checkpoints import find_checkpoint
from ..model.hf import load_transformers
from ..model.load import load_sam2
from ..model.registry import get_spec
from ..runtime.allocator import prefer_huge_pages
from .classical import ClassicalBackend

log = logging.getLogger(__name__)

BACKENDS = ("auto", "sam2", "classical", "transformers")
CLASSICAL_NOTICE = (
    "No SAM 2 checkpoint found: using the weight-free classical backend (thresholding + "
    "region growing). For SAM 2, download a SAM 2.1 checkpoint (see docs/models.md) and "
    "choose it in the widget or pass checkpoint=..."
)
RANDOM_WEIGHTS_NOTICE = (
    "SAM 2 built with random weights (random_weights=True, no checkpoint loaded): its "
    "masks are meaningless, for plumbing checks only. For real results pass a SAM 2.1 "
    "checkpoint (see docs/models.md)."
)


def make_backend(
    backend: str,
    model: str,
    checkpoint,
    *,
    version,
    device,
    precision,
    image_size,
    random_weights,
    allow_download,
):
    """``(backend object, notice or None)`` for the Segmenter's arguments."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}.")
    if backend == "classical":
        return ClassicalBackend(), None
    if backend == "transformers":  # docs/models.md, "The transformers route"
        # first: it sets the allocator before torch is imported and raises MissingExtraError
        # when transformers is absent
        loaded = load_transformers(
            checkpoint,
            model=model,
            version=version,
            device=device,
            precision=precision,
            image_size=image_size,
            random_weights=random_weights,
            allow_download=allow_download,
        )
        from .transformers import TransformersBackend  # lazy: imports torch

        return TransformersBackend(loaded), _random_notice(random_weights)
    spec = get_spec(model, version)
    if (
        backend == "auto"
        and not random_weights
        and checkpoint is None
        and not allow_download
        and find_checkpoint(spec) is None
    ):
        log.warning(CLASSICAL_NOTICE)
        return ClassicalBackend(), CLASSICAL_NOTICE
    prefer_huge_pages()  # before torch is imported (runtime/allocator.py: why here)
    from .sam2 import Sam2Backend  # lazy: imports torch and sam2

    loaded = load_sam2(
        spec.size,
        checkpoint,
        version=spec.version,
        device=device,
        precision=precision,
        image_size=image_size,
        allow_download=allow_download,
        random_weights=random_weights,
    )
    return Sam2Backend(loaded), _random_notice(random_weights)


def _random_notice(random_weights: bool) -> str | None:
    """The notice of a model built without weights (logged once, like the classical one)."""
    if not random_weights:
        return None
    log.warning(RANDOM_WEIGHTS_NOTICE)
    return RANDOM_WEIGHTS_NOTICE


def cache_dtype_for(backend, cache_dtype):
    """``auto``: fp16 on a GPU (half the memory), as encoded on a CPU (exact parity)."""
    if cache_dtype != "auto":
        return cache_dtype
    on_gpu = str(getattr(backend, "device", "cpu")).split(":")[0] in ("cuda", "mps")
    return "fp16" if on_gpu else None
