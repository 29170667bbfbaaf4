"""Planes larger than the model input: overlapping tiles, read lazily, cached per tile.

- :func:`tile_grid` covers a plane with ``tile``-sized windows overlapping by ``overlap``;
- :func:`tile_around` is the window centred on a prompt;
- :func:`tile_embedding` reads *only* that window of the image (numpy, dask or zarr),
  normalises it with the stack-wide window and encodes it; embeddings are cached per tile
  (key: the tile's pixels + normalisation + model), so no full-plane copy is ever made;
- :func:`predict_tiled` / :func:`segment_into_tiled`: prompts on a large plane, answered
  from the tile around them (masks come back tile-local with their offset).

Automatic mode tile by tile is :mod:`napari_sam2.engine.automatic.tiled`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import labels as _labels
from .cancel import check_cancel
from .errors import PromptError
from .prompts import Box, ObjectPrompt, Points, make_objects


@dataclass(frozen=True)
class Tile:
    """A window ``[r0, r1) x [c0, c1)`` of a plane; ``cut`` = which of its sides
    (top, left, bottom, right) are inside the plane (not the plane's border)."""

    r0: int
    c0: int
    r1: int
    c1: int
    cut: tuple[bool, bool, bool, bool] = (False, False, False, False)
    core: tuple[int, int, int, int] | None = None  # r0, c0, r1, c1 of the owned region

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.r0, self.r1), slice(self.c0, self.c1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.r1 - self.r0, self.c1 - self.c0


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(starts))


def tile_grid(plane_shape, tile: int = 1024, overlap: int = 128) -> list[Tile]:
    """Overlapping ``tile`` x ``tile`` windows covering the plane (raster order)."""
    tile, overlap = int(tile), int(overlap)
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"Need tile > overlap >= 0, got tile {tile}, overlap {overlap}.")
    h, w = (int(v) for v in plane_shape)
    rs, cs = _starts(h, tile, tile - overlap), _starts(w, tile, tile - overlap)
    tiles = []
    for i, r0 in enumerate(rs):
        for j, c0 in enumerate(cs):
            r1, c1 = min(h, r0 + tile), min(w, c0 + tile)
            # core: split each overlap at its middle
            cr0 = 0 if i == 0 else (r0 + min(rs[i - 1] + tile, h)) // 2
            cr1 = h if i == len(rs) - 1 else (rs[i + 1] + r1) // 2
            cc0 = 0 if j == 0 else (c0 + min(cs[j - 1] + tile, w)) // 2
            cc1 = w if j == len(cs) - 1 else (cs[j + 1] + c1) // 2
            cut = (r0 > 0, c0 > 0, r1 < h, c1 < w)
            tiles.append(Tile(r0, c0, r1, c1, cut, (cr0, cc0, cr1, cc1)))
    return tiles


def tile_around(plane_shape, r0: float, c0: float, r1: float, c1: float, tile: int) -> Tile:
    """The ``tile``-sized window around the box (r0, c0, r1, c1), inside the plane.

    Windows snap to a lattice of step ``tile / 2`` (the lattice window whose centre is
    nearest the box's), so nearby prompts share a window and its cached embedding while
    the box stays at least ``tile / 4`` from a cut edge.  A box larger than ``tile`` gets
    a window of its own size (SAM then sees it downscaled).
    """
    h, w = (int(v) for v in plane_shape)
    out = []
    for lo, hi, n in ((r0, r1, h), (c0, c1, w)):
        span = int(np.ceil(hi - lo)) + 1
        size = max(int(tile), span)
        if size == int(tile):
            step = max(1, int(tile) // 2)
            start = int(round(((lo + hi) / 2 - size / 2) / step)) * step
            if not start <= lo or not hi < start + size:  # box not inside: centre it
                start = int(round((lo + hi) / 2 - size / 2))
        else:
            start = int(round((lo + hi) / 2 - size / 2))
        start = min(max(0, start), max(0, n - size))
        out.append((start, min(n, start + size)))
    (a, b), (c, d) = out
    return Tile(a, c, b, d, (a > 0, c > 0, b < h, d < w))


def default_tile_size(segmenter) -> int:
    """SAM 2's input size (a tile is encoded at full resolution), 2048 for the rest."""
    return int(getattr(segmenter.backend, "image_size", 2048))


# ------------------------------------------------------------------ reading
def raw_tile(src, index, tile: Tile) -> np.ndarray:
    """The tile's pixels as stored (only this window is read from lazy data)."""
    return read_window(src, index, tile.slices)


def tile_embedding(segmenter, index, tile: Tile, *, cancel=None):
    """The tile's embedding from the segmenter's cache, or read + normalised + encoded."""
    src = segmenter.require_source()
    raw = raw_tile(src, index, tile)
    key = ("tile", src.plane_key(index, raw=raw), segmenter.backend.cache_key())
    emb = segmenter.cache.get(key)
    if emb is None:
        check_cancel(cancel, "Segment everything cancelled.")
        image = src.to_sam_image(raw)
        emb = segmenter.backend.encode(image, cancel=cancel)
        segmenter.cache.stats.encodes += 1
        emb = segmenter.cache.put(key, emb)
    return emb


# ------------------------------------------------------------------ prompts
def predict_tiled(segmenter, plane=(), *, tile_size: int | None = None, cancel=None, **prompts):
    """Predict on the tile around the prompts; each :class:`Prediction` holds tile-local
    masks and ``info["offset"] = (r0, c0)``, ``info["tile"]`` its :class:`Tile`."""
    src = segmenter.require_source()
    index = src.check_index(plane)
    objects = prompts.pop("objects", None) or make_objects(**prompts)
    if not objects:
        raise PromptError("No prompt given: add a point, a box or a mask.")
    objects = [o.validated(src.plane_shape) for o in objects]
    lo = np.full(2, np.inf)
    hi = np.full(2, -np.inf)
    for o in objects:
        if o.mask is not None:
            raise PromptError("Mask prompts are not supported on tiled planes.")
        if o.box is not None:
            lo = np.minimum(lo, [o.box.r0, o.box.c0])
            hi = np.maximum(hi, [o.box.r1, o.box.c1])
        if o.points is not None:
            lo = np.minimum(lo, o.points.coords.min(0))
            hi = np.maximum(hi, o.points.coords.max(0))
    tile = tile_around(
        src.plane_shape, lo[0], lo[1], hi[0], hi[1], tile_size or default_tile_size(segmenter)
    )
    emb = tile_embedding(segmenter, index, tile, cancel=cancel)
    check_cancel(cancel, "Segment everything cancelled.")
    local = [_shifted(o, tile.r0, tile.c0) for o in objects]
    preds = segmenter.backend.predict(emb, local)
    for p in preds:
        p.info.update(offset=(tile.r0, tile.c0), tile=tile)
    return preds


def _shifted(obj: ObjectPrompt, r0: int, c0: int) -> ObjectPrompt:
    pts = box = None
    if obj.points is not None:
        pts = Points(obj.points.coords - [r0, c0], obj.points.labels)
    if obj.box is not None:
        b = obj.box
        box = Box(b.r0 - r0, b.c0 - c0, b.r1 - r0, b.c1 - c0)
    return ObjectPrompt(points=pts, box=box, label_id=obj.label_id, meta=obj.meta)


def segment_into_tiled(
    segmenter, labels, plane=(), *, policy: str = _labels.KEEP, tile_size=None, **prompts
) -> list[int]:
    """:func:`predict_tiled` and write each object (new IDs from ``max + 1``)."""
    src = segmenter.require_source()
    index = src.check_index(plane)
    preds = predict_tiled(segmenter, index, tile_size=tile_size, **prompts)
    next_id = _labels.next_label_id(labels)
    ids = []
    for p in preds:
        tile = p.info["tile"]
        view = labels[index + tile.slices]
        edit = _labels.plan_object_write(view, p.mask, label_id=next_id, policy=policy)
        if edit.size:
            rr, cc = edit.indices
            lead = tuple(np.full(rr.shape, i, np.intp) for i in index)
            labels[lead + (rr + tile.r0, cc + tile.c0)] = edit.values
            ids.append(next_id)
            next_id += 1
    return ids


def read_window(src, index, spatial) -> np.ndarray:
    """The pixels of one plane's ``spatial`` window as stored (channels first)."""
    data = np.asarray(src.data[src._selector(src.check_index(index), spatial)])
    if src.channel_axis is not None:
        rest = [a for a in range(src.data.ndim) if a not in src.leading_axes]
        data = np.moveaxis(data, rest.index(src.channel_axis), 0)
    return data.astype(np.uint8) if data.dtype == bool else data
