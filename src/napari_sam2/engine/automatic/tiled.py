"""Automatic mode on planes larger than the model input, tile by tile.

Each tile keeps the objects whose centre lies in its *core* (the tile minus half the
overlap on each inner side: the cores partition the plane) plus the pieces cut by a tile
edge; a piece or object that overlaps an object already written by an earlier tile joins
its ID, so an object crossing a tile border gets one ID.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian, threshold_otsu

from ..cancel import check_cancel
from ..tiling import Tile, default_tile_size, raw_tile, read_window, tile_embedding, tile_grid
from .params import CANCELLED, AutomaticRegion, EverythingParams, automatic_instances
from .postprocess import fill_small_holes, filter_areas

MERGE_FRACTION = 0.5  # overlap / smaller area above which two pieces are one object


def plane_threshold(src, index, sigma: float = 1.0, max_values: int = 4_000_000):
    """Otsu threshold and polarity of the whole normalised plane, from a strided sample
    (bounded memory; every tile then uses the same threshold).  Returns (t, bright)."""
    h, w = src.plane_shape
    step = max(1, int(np.ceil(np.sqrt(h * w / max_values))))
    gray = src.to_sam_image(read_window(src, index, (slice(None, None, step),) * 2)).mean(-1)
    smooth = gaussian(gray, sigma / step, preserve_range=True)
    if smooth.min() == smooth.max():
        return float(smooth.min()), True
    t = float(threshold_otsu(smooth))
    return t, bool((smooth > t).mean() <= 0.5)


def tile_instances(segmenter, index, tile: Tile, params, *, threshold=None, cancel=None):
    """Instance labels (int32, tile-local) of one tile; no area filter.

    ``threshold``: a callable giving the whole plane's ``(t, bright)`` (see
    :func:`plane_threshold`), for backends that threshold (the classical one)."""
    src = segmenter.require_source()
    local = EverythingParams(**{**params.__dict__, "min_area": 0.0, "max_area": None})
    top, left, bottom, right = tile.cut
    region = AutomaticRegion(
        embedding=lambda: tile_embedding(segmenter, index, tile, cancel=cancel),
        gray=lambda: src.to_sam_image(raw_tile(src, index, tile)).mean(-1),
        threshold=threshold or (lambda: plane_threshold(src, index, params.sigma)),
        edge_box=(left, top, right, bottom),
    )
    message = f"The {getattr(segmenter.backend, 'name', '?')!r} backend has no automatic mode."
    return automatic_instances(segmenter.backend, region, local, cancel=cancel, missing=message)


def _touches_cut(sl, tile: Tile) -> bool:
    top, left, bottom, right = tile.cut
    h, w = tile.shape
    return (
        (top and sl[0].start == 0)
        or (left and sl[1].start == 0)
        or (bottom and sl[0].stop == h)
        or (right and sl[1].stop == w)
    )


def compact_ids(lab: np.ndarray) -> np.ndarray:
    """Renumber the IDs present to 1..N keeping their order (O(pixels), no sort)."""
    present = np.bincount(lab.ravel()) > 0
    present[0] = False
    lut = np.zeros(present.size, np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return lut[lab]


def everything_tiled(
    segmenter,
    index,
    params: EverythingParams,
    *,
    tile_size=None,
    overlap=None,
    cancel=None,
    progress=None,
) -> np.ndarray:
    """Instance labels (int32) of a large plane, computed tile by tile and merged across
    tile borders.  IDs 1..N in the order the tiles found them."""
    src = segmenter.require_source()
    index = src.check_index(index)
    tile_size = int(tile_size or params.tile_size or default_tile_size(segmenter))
    overlap = int(params.tile_overlap if overlap is None else overlap)
    tiles = tile_grid(src.plane_shape, tile_size, min(overlap, tile_size - 1))
    threshold = _once(lambda: plane_threshold(src, index, params.sigma))  # tiles share it
    out = np.zeros(src.plane_shape, np.int32)
    areas = [0]
    for k, tile in enumerate(tiles):
        check_cancel(cancel, CANCELLED)
        loc = tile_instances(segmenter, index, tile, params, threshold=threshold, cancel=cancel)
        g_all = out[tile.slices]
        cr0, cc0, cr1, cc1 = tile.core
        for lid, sl in enumerate(ndi.find_objects(loc), start=1):
            if sl is None:
                continue
            m = loc[sl] == lid
            rr, cc = np.nonzero(m)
            cy, cx = rr.mean() + sl[0].start + tile.r0, cc.mean() + sl[1].start + tile.c0
            in_core = cr0 <= cy < cr1 and cc0 <= cx < cc1
            if not in_core and not _touches_cut(sl, tile):
                continue  # whole here, but owned by the tile whose core holds its centre
            g = g_all[sl]
            under = g[m]
            under = under[under > 0]
            target = None
            if under.size:
                ids, counts = np.unique(under, return_counts=True)
                j = int(ids[np.argmax(counts)])
                if counts.max() >= MERGE_FRACTION * min(rr.size, areas[j]):
                    target = j
            free = m & (g == 0)
            n_free = int(free.sum())
            if target is None:
                if n_free == 0:
                    continue
                target = len(areas)
                areas.append(0)
            g[free] = target
            areas[target] += n_free
        if progress is not None:
            progress(k + 1, len(tiles))
    out = filter_areas(out, params.min_area, params.max_area)
    if params.hole_area:
        out = fill_small_holes(out, params.hole_area)
    return compact_ids(out)


def _once(compute):
    """``compute`` as a callable that runs it at most once (only backends that need the
    plane's threshold pay for it)."""
    memo = []

    def value():
        if not memo:
            memo.append(compute())
        return memo[0]

    return value
