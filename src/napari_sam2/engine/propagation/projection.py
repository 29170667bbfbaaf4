"""Projection mode of :mod:`~napari_sam2.engine.propagation`: plane after plane with the
image predictor (any backend, the classical one included).

Each object is prompted on the next plane with its mask on the previous plane (mask
prompt and its slightly grown box by default); all objects of a plane go in one batched
``predict`` call, with the plane's embedding from the segmenter's cache.  Pixels claimed
by several objects go to the higher score (ties: the lower ID).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..prompts import Box, MaskPrompt, ObjectPrompt, Points
from .report import END

BOX_PAD = 0.1  # the box prompt grows by this fraction of its size (objects grow too)


def padded_box(mask: np.ndarray, pad: float = BOX_PAD) -> Box:
    b = MaskPrompt(mask).bbox()
    h, w = mask.shape
    dr = max(1.0, pad * (b.r1 - b.r0 + 1))
    dc = max(1.0, pad * (b.c1 - b.c0 + 1))
    return Box(max(0, b.r0 - dr), max(0, b.c0 - dc), min(h - 1, b.r1 + dr), min(w - 1, b.c1 + dc))


def resolve_overlaps(masks: Sequence[np.ndarray], scores: Sequence[float], ids: Sequence[int]):
    """Give each pixel claimed by several objects to the highest score (ties: lower ID)."""
    order = sorted(range(len(masks)), key=lambda i: (-float(scores[i]), int(ids[i])))
    out = [None] * len(masks)
    claimed = None
    for i in order:
        m = np.asarray(masks[i], bool)
        if claimed is None:
            claimed = np.zeros(m.shape, bool)
        m = m & ~claimed
        claimed |= m
        out[i] = m
    return out


def interior_point(mask: np.ndarray) -> np.ndarray:
    """The pixel deepest inside the mask (farthest from its border), as (row, col)."""
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.asarray(np.unravel_index(int(np.argmax(dist)), mask.shape), float)


def prompt_for(mask: np.ndarray, label_id: int, kind: str) -> ObjectPrompt:
    """The next plane's prompt for an object whose previous mask is ``mask``."""
    parts = kind.split("+")
    box = padded_box(mask) if "box" in parts else None
    mp = MaskPrompt(mask) if "mask" in parts else None
    pts = Points(interior_point(mask)[None], np.ones(1)) if "point" in parts else None
    return ObjectPrompt(points=pts, box=box, mask=mp, label_id=label_id)


def predict_plane(seg, plan, pos, masks: dict):
    """Prompt plane ``pos`` with each object's mask (``{label ID: mask}``, one batched
    predict): ``(ids, predictions, full-plane masks with overlaps resolved)``."""
    ids = sorted(masks)
    objects = [prompt_for(masks[i], i, plan.prompt) for i in ids]
    preds = seg.predict(plan.index(pos), objects=objects, multimask=False, cancel=plan.cancel)
    plan.report.plane_reads += 1
    shape = plan.source.plane_shape  # bbox-local masks on tiled planes
    full = [p.plane_mask(shape) for p in preds]
    return ids, preds, resolve_overlaps(full, [p.score for p in preds], ids)


def run_projection(seg, plan) -> None:
    """Plane by plane with the image predictor (any backend)."""
    report = plan.report
    for direction in plan.directions:
        positions = plan.positions(direction)
        active = dict(plan.start_masks)
        for track in report.objects.values():
            track.stopped[direction] = END
        for k, pos in enumerate(positions):
            if not active:
                plan.step(len(positions) - k)
                break
            plan.check_cancel()
            ids, _, resolved = predict_plane(seg, plan, pos, active)
            plan.take(direction, pos, dict(zip(ids, resolved, strict=True)), active)
