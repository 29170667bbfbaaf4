"""The predictor protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ImageError
from ..prompts import ObjectPrompt


@dataclass
class Prediction:
    """Result for one object.

    ``candidates`` (K, H, W) bool masks ordered by decreasing ``scores`` (K,);
    ``mask`` is the best one.  ``low_res`` holds the backend's low-resolution logits of
    each candidate when it has them (SAM 2), for iterative refinement.
    """

    candidates: np.ndarray
    scores: np.ndarray
    low_res: np.ndarray | None = None
    prompt: ObjectPrompt | None = None
    info: dict = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.candidates[0]

    @property
    def score(self) -> float:
        return float(self.scores[0])

    @property
    def offset(self) -> tuple[int, int]:
        """(row, col) of the masks' top-left pixel in the plane: (0, 0) for whole-plane
        masks, the bounding box's corner for bbox-local ones (tiled planes)."""
        r, c = self.info.get("offset", (0, 0))
        return int(r), int(c)

    def plane_mask(self, shape) -> np.ndarray:
        """The best mask placed on a plane of ``shape`` (H, W); a whole-plane mask is
        returned as it is."""
        m = self.mask
        shape = tuple(int(v) for v in shape)
        if "offset" not in self.info or m.shape == shape and self.offset == (0, 0):
            return m
        out = np.zeros(shape, bool)
        r, c = self.offset
        sub = out[r : r + m.shape[0], c : c + m.shape[1]]
        sub[...] = m[: sub.shape[0], : sub.shape[1]]
        return out


@runtime_checkable
class Predictor(Protocol):
    """A promptable segmenter of 2-D planes.

    ``encode`` is the expensive, cacheable step (image → embedding); ``predict`` is cheap.
    A backend also *declares* what it can do beyond prompts, so that no caller has to
    test its name or class (docs/scripting.md, "Custom backends"):

    - ``automatic_instances(region, params, *, cancel=None, progress=None)`` → int32
      instance labels (1..N) of an :class:`~napari_sam2.engine.automatic.params.AutomaticRegion`
      ("segment everything"); optional: a backend without it has no automatic mode;
    - ``supports_video`` (default False): SAM 2's video predictor can propagate with its
      model (``mode="video"``); such a backend also has ``loaded`` (the loaded model);
    - ``propagation_prompt`` (default ``"mask+box"``): how projection propagation prompts
      the next plane with an object's previous mask when ``prompt="auto"``;
    - ``trainable`` (default False): fine-tuning can train its mask decoder.

    Read them with :func:`capability`.
    """

    name: str

    def encode(self, image: np.ndarray, cancel=None) -> Any:
        """Embed a float32 (H, W, 3) image in [0, 1]; the result is opaque and cacheable.

        ``cancel`` (a ``threading.Event`` or None): once set, raise
        :class:`~napari_sam2.engine.errors.Cancelled` as soon as the backend can.
        """

    def predict(
        self, embedding: Any, objects: Sequence[ObjectPrompt], *, multimask: bool | None = None
    ) -> list[Prediction]:
        """One :class:`Prediction` per object, in order."""

    def describe(self) -> dict:
        """JSON-friendly facts for status lines and provenance."""

    def cache_key(self) -> tuple:
        """What identifies its embeddings (model, weights, device, precision, input size)."""


@dataclass(frozen=True)
class SamFeatures:
    """What SAM 2's mask decoder reads from an image, typed: the image embedding, the
    high-resolution features and the original (H, W).

    A SAM 2 backend's ``encode`` output stays opaque to the caches (they store and move it
    as it is); code that runs the decoder itself (fine-tuning) reads it through this view
    instead of by key.
    """

    image_embed: Any
    high_res_feats: tuple
    orig_hw: tuple[int, int]

    @classmethod
    def of(cls, embedding) -> SamFeatures:
        """The features of a SAM 2 (or transformers) backend's embedding."""
        if isinstance(embedding, cls):
            return embedding
        return cls(
            embedding["image_embed"],
            tuple(embedding["high_res_feats"]),
            (int(embedding["orig_hw"][0]), int(embedding["orig_hw"][1])),
        )

    def to(self, device, dtype=None) -> SamFeatures:
        """A copy as new tensors on ``device`` (and ``dtype``), outside the autograd graph."""

        def move(t):
            return t.detach().clone().to(device=device, dtype=dtype)

        return SamFeatures(
            move(self.image_embed), tuple(move(f) for f in self.high_res_feats), self.orig_hw
        )


CAPABILITIES = {"supports_video": False, "propagation_prompt": "mask+box", "trainable": False}


def capability(backend, name: str):
    """A declared capability of ``backend`` (see :class:`Predictor`), or its default."""
    return getattr(backend, name, CAPABILITIES[name])


def sort_candidates(masks: np.ndarray, scores: np.ndarray, low_res=None):
    """Order candidates by decreasing score."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return masks[order], np.asarray(scores)[order], (None if low_res is None else low_res[order])


def check_sam_input(image: np.ndarray) -> None:
    """SAM 2's input: float32 (H, W, 3) with finite values (NaN/inf would give NaN
    embeddings and masks silently; ``Segmenter.set_image`` maps them, direct callers must)."""
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.float32:
        raise ImageError(
            f"SAM 2 input must be float32 (H, W, 3), got {image.dtype} {image.shape}."
        )
    if not np.isfinite(image).all():
        n = int(image.size - np.count_nonzero(np.isfinite(image)))
        raise ImageError(
            f"SAM 2 input has {n} NaN/inf value(s): normalise the image first "
            "(Segmenter.set_image maps NaN to 0 and ±inf to the window's ends), or replace "
            "them, e.g. with numpy.nan_to_num."
        )
