"""Steps shared by every automatic mode: area filter, hole filling, overlap resolution and
deterministic renumbering of an instance labels plane (numpy + scipy only)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .params import EverythingParams


def filter_areas(lab: np.ndarray, min_area: float = 0.0, max_area: float | None = None):
    """Objects with an area outside [min_area, max_area] pixels become background."""
    if not min_area and max_area is None:
        return lab
    areas = np.bincount(lab.ravel())
    drop = areas < float(min_area)
    if max_area is not None:
        drop |= areas > float(max_area)
    drop[0] = False
    if drop.any():
        lab = np.where(drop[lab], 0, lab).astype(lab.dtype)
    return lab


def relabel_raster(lab: np.ndarray) -> np.ndarray:
    """IDs 1..N in raster order of each object's first pixel (deterministic)."""
    ids, first = np.unique(lab.ravel(), return_index=True)
    keep = ids > 0
    ids, first = ids[keep], first[keep]
    lut = np.zeros(int(lab.max()) + 1 if lab.size else 1, np.int32)
    lut[ids[np.argsort(first, kind="stable")]] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[lab]


def fill_small_holes(lab: np.ndarray, hole_area: float) -> np.ndarray:
    """Background holes of up to ``hole_area`` pixels enclosed by one object join it."""
    if hole_area <= 0 or not lab.any():
        return lab
    holes, n = ndi.label(lab == 0)
    if n == 0:
        return lab
    sizes = np.bincount(holes.ravel())
    # a hole touching the plane border is background, not a hole
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small = sizes <= hole_area
    small[0] = False
    small[border] = False
    if not small.any():
        return lab
    out = lab.copy()
    for h in np.flatnonzero(small):
        sl = ndi.find_objects((holes == h).astype(np.uint8))[0]
        sl = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        hole = holes[sl] == h
        ring = ndi.binary_dilation(hole) & ~hole
        around = np.unique(lab[sl][ring])
        if around.size == 1 and around[0] > 0:
            out[sl][hole] = around[0]
    return out


def resolve_overlaps(masks, scores, shape, params: EverythingParams = EverythingParams()):
    """Candidate masks → one non-overlapping labels plane.

    ``masks``: an iterable of (H, W) bool arrays, or of ``(mask, (r0, c0))`` pairs for
    bbox-local masks; ``scores`` one float each.  Higher score wins a contested pixel
    (ties: the earlier mask); an object left with less than ``min_area`` pixels is dropped,
    one over ``max_area`` too; small holes are filled; IDs 1..N in raster order.
    Returns ``(labels int32, scores of objects 1..N)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    lab = np.zeros(shape, np.int32)
    order = np.argsort(-scores, kind="stable")
    masks = list(masks)
    kept_scores = [0.0]
    for k in order:
        m = masks[k]
        r0, c0 = 0, 0
        if isinstance(m, tuple):
            m, (r0, c0) = m
        m = np.asarray(m, bool)
        region = lab[r0 : r0 + m.shape[0], c0 : c0 + m.shape[1]]
        free = m & (region == 0)
        area = int(free.sum())
        if area == 0 or area < params.min_area:
            continue
        if params.max_area is not None and area > params.max_area:
            continue
        kept_scores.append(float(scores[k]))
        region[free] = len(kept_scores) - 1
    lab = fill_small_holes(lab, params.hole_area)
    first_order = relabel_raster(lab)
    # carry the scores through the renumbering
    new_scores = np.zeros(int(first_order.max()), np.float32)
    if new_scores.size:
        old = lab.ravel()
        new = first_order.ravel()
        nz = old > 0
        pairs = np.unique(np.stack([new[nz], old[nz]]), axis=1)
        new_scores[pairs[0] - 1] = np.asarray(kept_scores, np.float32)[pairs[1]]
    return first_order, new_scores
