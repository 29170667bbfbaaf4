"""Objects that move between frames: motion estimate and the "same object" rule of a time axis.

Through Z an object barely moves from one plane to the next, so the propagation asks the
next plane's mask to overlap the previous one (IoU >= 0.5).  Through time a cell moves by
a good fraction of its size per frame and that rule stops every object at frame 1.  On a
time axis (``axis_kind="t"``) the propagation instead

1. estimates how the object moved (:func:`estimate_displacement`: masked normalised
   cross-correlation, :func:`skimage.registration.phase_cross_correlation` with the
   object's mask as the reference mask, over the object's neighbourhood only);
2. prompts the next frame with the previous mask moved by that displacement
   (:func:`shift_mask`);
3. accepts the new mask as the same object (:class:`TimeRule`) when the model is confident
   (its predicted IoU and, for SAM 2.1, its object score), when the mask lies where the
   moved object is (centroid within a fraction of the object's diameter) and when its area
   did not jump; it stops with a named reason when the object leaves the field of view,
   divides, is lost or vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .report import AREA_JUMP, VANISHED

# reasons an object stops on a time axis (besides those of propagation_report)
LEFT_FIELD = "left_field"  # the moved object lies mostly outside the image
DIVIDED = "divided"  # the mask split into two or more parts of similar size
LOST = "lost"  # the new mask is not where the moved object is / moved too far
LOW_SCORE = "low_score"  # the model's predicted IoU / object score says "not the object"
AXIS_KINDS = ("z", "t")
TIME_NAMES = ("t", "time", "frame", "frames", "timepoint", "timepoints")

DEFAULT_MAX_DISPLACEMENT = 1.0  # per frame, in object diameters
DEFAULT_MAX_OFFSET = 0.5  # new centroid vs moved object, in object diameters
DEFAULT_MIN_SCORE = 0.5  # SAM's predicted IoU
DEFAULT_MIN_INSIDE = 0.5  # fraction of the moved object still in the image


def check_axis_kind(kind: str) -> str:
    k = str(kind).lower()
    if k not in AXIS_KINDS:
        raise ValueError(f"axis_kind must be one of {AXIS_KINDS}, not {kind!r}.")
    return k


def kind_of_axis(label) -> str:
    """``"t"`` for an axis named like time (``T``, ``time``, ``frame``...), else ``"z"``."""
    a = str(label or "").strip().lower()
    return "t" if a in TIME_NAMES else "z"


def diameter(mask: np.ndarray) -> float:
    """Equivalent diameter of the mask (of a disc of the same area), >= 1 pixel."""
    return max(1.0, float(np.sqrt(4.0 * float(mask.sum()) / np.pi)))


def centroid(mask: np.ndarray) -> np.ndarray:
    rr, cc = np.nonzero(mask)
    if rr.size == 0:
        return np.full(2, np.nan)
    return np.array([rr.mean(), cc.mean()])


def shift_mask(mask: np.ndarray, shift) -> np.ndarray:
    """``mask`` moved by ``shift`` = (dr, dc) whole pixels; what leaves the plane is lost."""
    dr, dc = (int(round(float(v))) for v in shift)
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    if abs(dr) >= h or abs(dc) >= w:
        return out
    src_r = slice(max(0, -dr), min(h, h - dr))
    src_c = slice(max(0, -dc), min(w, w - dc))
    dst_r = slice(max(0, dr), min(h, h + dr))
    dst_c = slice(max(0, dc), min(w, w + dc))
    out[dst_r, dst_c] = mask[src_r, src_c]
    return out


def window_around(mask: np.ndarray, pad: float) -> tuple[slice, slice]:
    """The mask's bounding box grown by ``pad`` pixels on each side, inside the plane."""
    rr, cc = np.nonzero(np.any(mask, axis=1))[0], np.nonzero(np.any(mask, axis=0))[0]
    h, w = mask.shape
    p = int(np.ceil(pad))
    return (
        slice(max(0, int(rr[0]) - p), min(h, int(rr[-1]) + p + 1)),
        slice(max(0, int(cc[0]) - p), min(w, int(cc[-1]) + p + 1)),
    )


def estimate_displacement(prev: np.ndarray, nxt: np.ndarray, mask: np.ndarray, pad: float):
    """How the object under ``mask`` on the gray frame ``prev`` moved on frame ``nxt``.

    Both frames are 2-D arrays of the window given by :func:`window_around` (``mask`` of
    the same window).  Masked normalised cross-correlation: only the object and a thin
    ring around it are matched, so neighbours moving differently do not pull the
    estimate.  Returns (dr, dc) in pixels, (0, 0) when nothing can be estimated.
    """
    from skimage.registration import phase_cross_correlation

    prev = np.asarray(prev, np.float64)
    nxt = np.asarray(nxt, np.float64)
    if not mask.any() or prev.std() == 0 or nxt.std() == 0:
        return np.zeros(2)
    ring = max(2, int(round(0.15 * diameter(mask))))
    ref = ndi.binary_dilation(mask, iterations=ring)
    if ref.all():  # no background in the window: the mask alone
        ref = mask
    shift = phase_cross_correlation(
        prev, nxt, reference_mask=ref, moving_mask=np.ones_like(ref), overlap_ratio=0.3
    )[0]
    d = -np.asarray(shift, float)  # skimage: the shift that registers nxt onto prev
    if not np.all(np.isfinite(d)) or np.hypot(*d) > pad + 1:
        return np.zeros(2)
    return d


@dataclass
class TimeRule:
    """When a time-lapse object's next mask is (not) the same object.

    Used through the same ``check(prev, new)`` call as the Z rule; ``prev`` is the
    previous mask moved by the estimated motion (projection mode) or as it was (video
    mode, where ``max_offset`` then also covers the motion).
    """

    max_offset: float = DEFAULT_MAX_OFFSET
    max_displacement: float = DEFAULT_MAX_DISPLACEMENT
    min_score: float = DEFAULT_MIN_SCORE
    max_area_ratio: float | None = 2.5
    min_area: int = 4
    min_inside: float = DEFAULT_MIN_INSIDE
    split_fraction: float = 0.25  # each part of a division holds this much of the area

    def check(self, prev: np.ndarray, new: np.ndarray) -> tuple[str | None, float]:
        area = int(new.sum())
        if area < self.min_area:
            return VANISHED, 0.0
        inter = np.logical_and(prev, new).sum()
        union = np.logical_or(prev, new).sum()
        ov = float(inter / union) if union else 0.0
        prev_area = max(int(prev.sum()), 1)
        if self.max_area_ratio is not None and area > self.max_area_ratio * prev_area:
            return AREA_JUMP, ov
        if self.divided(prev, new):
            return DIVIDED, ov
        offset = float(np.hypot(*(centroid(new) - centroid(prev))))
        if not offset <= self.max_offset * diameter(prev):
            return LOST, ov
        if self.max_area_ratio is not None and area * self.max_area_ratio < prev_area:
            at_border = new[0].any() or new[-1].any() or new[:, 0].any() or new[:, -1].any()
            return (LEFT_FIELD if at_border else AREA_JUMP), ov
        return None, ov

    def divided(self, prev: np.ndarray, new: np.ndarray) -> bool:
        lab, n = ndi.label(new)
        if n < 2:
            return False
        sizes = np.bincount(lab.ravel())[1:]
        big = sizes >= self.split_fraction * max(int(prev.sum()), 1)
        return int(big.sum()) >= 2

    def confident(self, prediction) -> bool:
        """The model's own verdict: predicted IoU and (SAM 2.1) object score."""
        obj = prediction.info.get("object_score")
        if obj is not None and float(obj) <= 0.0:
            return False
        return float(prediction.score) >= self.min_score

    def bound(self, mask: np.ndarray) -> float:
        """Largest plausible displacement of the object per frame, in pixels."""
        return self.max_displacement * diameter(mask)


def time_rule(mode: str, max_area_ratio, min_area) -> TimeRule:
    """The time-axis rule for a propagation mode: in video mode the previous mask is not
    moved first, so the centroid may move by the displacement bound plus the offset."""
    rule = TimeRule(max_area_ratio=max_area_ratio, min_area=int(min_area))
    if mode == "video":
        rule.max_offset = rule.max_offset + rule.max_displacement
    return rule


__all__ = [
    "AXIS_KINDS",
    "DIVIDED",
    "LEFT_FIELD",
    "LOST",
    "LOW_SCORE",
    "TimeRule",
    "centroid",
    "diameter",
    "estimate_displacement",
    "kind_of_axis",
    "shift_mask",
    "time_rule",
    "window_around",
]
