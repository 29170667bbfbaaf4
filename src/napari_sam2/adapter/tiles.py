"""Large planes and pyramids in napari: a prompt is answered from one tile, never the plane.

When the viewed plane is larger than the model input (or a coarser resolution level of a
multiscale layer is chosen) the session does not read the plane: it reads the tile around
the prompts (:func:`napari_sam2.engine.tiling.predict_tiled`: a model-input-sized window,
encoded at the chosen level's resolution and cached per tile), keeps the masks
tile-local, previews them as a small layer placed over the tile, and writes only their
bounding box into the Labels layer (one undo step, :mod:`napari_sam2.adapter.commit`).

Resolution levels: a level's pixel ``k`` covers the full-resolution pixels
``[k f, (k + 1) f)`` (``f`` = level-0 size / level size per axis, napari's downsample
factor).  A prompt at full-resolution coordinate ``x`` sits at ``(x + 0.5) / f - 0.5`` on
the level; a mask pixel of the level becomes the ``f x f`` block it covers.

Prompts spanning more than :data:`MAX_WINDOW` tiles (a huge box, points far apart) are
answered on a strided view of the level (every ``s``-th pixel, read lazily) so that the
window read stays at most ``MAX_WINDOW`` tiles wide: the model sees such prompts
downscaled anyway (its input is one tile), and the read stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engine.backends.base import Prediction
from ..engine.errors import PromptError
from ..engine.prompts import Box, ObjectPrompt, Points
from ..engine.tiling import default_tile_size, predict_tiled

MAX_WINDOW = 2  # prompts wider than this many tiles are answered on a strided view
UNTILED_MAX_PIXELS = 4096 * 4096  # mask prompts (refine, polygons) below this: whole plane


@dataclass(frozen=True)
class Placement:
    """Where tile-local masks lie on the full-resolution plane.

    ``offset``: the tile's origin in pixels of the level read; ``factor``: full-resolution
    pixels per pixel of that level (rows, cols); ``plane_shape``: the full-resolution plane.
    """

    offset: tuple[int, int]
    factor: tuple[float, float]
    plane_shape: tuple[int, int]
    level: int = 0
    stride: int = 1

    def full_window(self, mask: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """The full-resolution bounding box of ``mask`` and the mask upsampled in it."""
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        out = []
        for lo, hi, off, f, n in (
            (rows[0], rows[-1] + 1, self.offset[0], self.factor[0], self.plane_shape[0]),
            (cols[0], cols[-1] + 1, self.offset[1], self.factor[1], self.plane_shape[1]),
        ):
            a = max(0, math.floor((off + lo) * f))
            b = min(n, math.ceil((off + hi) * f))
            out.append(slice(a, b))
        return tuple(out), self.upsample(mask, tuple(out))

    def upsample(self, mask: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
        """``mask`` (tile-local, level pixels) sampled on the full-resolution ``window``."""
        idx = []
        for sl, off, f, n in zip(window, self.offset, self.factor, mask.shape, strict=True):
            full = np.arange(sl.start, sl.stop)
            idx.append(np.clip(np.floor(full / f).astype(np.intp) - off, 0, n - 1))
        return mask[np.ix_(*idx)]


# ------------------------------------------------------------------ levels
def level_shapes(image_layer, orientation=None) -> list[tuple[int, int]]:
    """The (rows, cols) plane shape of each resolution level (one for a plain layer), for
    the displayed axes (``orientation``, :mod:`.orientation`; default: the last two)."""
    nd = image_layer.ndim
    rows, cols = (nd - 2, nd - 1) if orientation is None else orientation.image_axes[-2:]
    data = image_layer.data if getattr(image_layer, "multiscale", False) else [image_layer.data]
    return [(int(d.shape[rows]), int(d.shape[cols])) for d in data]


def level_factor(image_layer, level: int, orientation=None) -> tuple[float, float]:
    shapes = level_shapes(image_layer, orientation)
    (h0, w0), (h, w) = shapes[0], shapes[level]
    return h0 / h, w0 / w


def level_options(image_layer) -> list[tuple[str, int]]:
    """(text, level) pairs for the widget's resolution picker; empty without a choice."""
    if image_layer is None or not getattr(image_layer, "multiscale", False):
        return []
    out = []
    for k, (h, w) in enumerate(level_shapes(image_layer)):
        f = level_factor(image_layer, k)[1]
        what = "full resolution" if k == 0 else f"level {k}, 1/{f:g}"
        out.append((f"{w} x {h} px ({what})", k))
    return out


def tile_size_of(session) -> int:
    return int(getattr(session, "tile_size", None) or default_tile_size(session.segmenter))


def wants_tiles(session, image_layer, level: int = 0, orientation=None) -> bool:
    """Tile when a coarser level is chosen or the plane is larger than the model input."""
    if level:
        return True
    return max(level_shapes(image_layer, orientation)[0]) > tile_size_of(session)


def check_tiled_prompts(has_masks: bool, plane_shape, level: int) -> bool:
    """Whether a request runs tiled given its prompts: mask prompts (refine, polygons)
    use the whole plane when it is small enough, else raise :class:`PromptError`."""
    if not has_masks:
        return True
    if level == 0 and plane_shape[0] * plane_shape[1] <= UNTILED_MAX_PIXELS:
        return False
    raise PromptError(
        "Refining an object or polygon/ellipse prompts are not supported on large planes "
        "or coarser resolution levels: use points and rectangles there."
    )


# ----------------------------------------------------------------- predict
def _to_level(obj: ObjectPrompt, factor, shape) -> ObjectPrompt:
    f = np.asarray(factor, float)
    hi = np.asarray(shape, float) - 1
    pts = box = None
    if obj.points is not None:
        c = np.clip((obj.points.coords + 0.5) / f - 0.5, 0, hi)
        pts = Points(c, obj.points.labels)
    if obj.box is not None:
        b = np.clip((obj.box.as_array().reshape(2, 2) + 0.5) / f - 0.5, 0, hi).ravel()
        box = Box(*b)
    return ObjectPrompt(points=pts, box=box, label_id=obj.label_id, meta=obj.meta)


def _extent(objects) -> float:
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for o in objects:
        for c in (
            o.points.coords if o.points is not None else np.empty((0, 2)),
            o.box.as_array().reshape(2, 2) if o.box is not None else np.empty((0, 2)),
        ):
            if len(c):
                lo, hi = np.minimum(lo, c.min(0)), np.maximum(hi, c.max(0))
    return float(np.max(hi - lo)) if np.all(np.isfinite(lo)) else 0.0


def _strided(data, src_kwargs, stride: int):
    """Every ``stride``-th pixel along the plane axes, lazily (dask) or as a numpy view."""
    nd = data.ndim
    rgb = bool(src_kwargs.get("rgb"))
    axes = (nd - 3, nd - 2) if rgb else (nd - 2, nd - 1)
    sel = [slice(None)] * nd
    for a in axes:
        sel[a] = slice(None, None, stride)
    if not isinstance(data, np.ndarray):
        import dask.array as da

        if not isinstance(data, da.Array):
            chunks = getattr(data, "chunks", None)
            data = da.from_array(data, chunks=chunks if chunks else "auto", name=False)
    return data[tuple(sel)]


def predict_request(session, req) -> tuple[list[Prediction], Placement]:
    """Encode the tile around ``req``'s prompts (worker thread) and predict on it."""
    seg, tile = session.segmenter, tile_size_of(session)
    img = req.image_layer
    orient = req.oriented()
    plane0 = level_shapes(img, orient)[0]
    level = req.source.level
    factor = level_factor(img, level, orient)
    shape = level_shapes(img, orient)[level]
    objects = [_to_level(o, factor, shape) for o in req.prompts.objects]
    data, sig, stride = req.source.data, req.source.signature(), 1
    if _extent(objects) > MAX_WINDOW * tile:
        stride = math.ceil(_extent(objects) / (MAX_WINDOW * tile))
        data = _strided(data, req.source.kwargs, stride)
        sig = (sig, "stride", stride)
        shape = tuple(math.ceil(n / stride) for n in shape)
        objects = [_to_level(o, (stride, stride), shape) for o in objects]
        factor = (factor[0] * stride, factor[1] * stride)
    session.ensure_image(req.source, data=data, signature=sig)
    preds = predict_tiled(seg, req.plane, objects=objects, tile_size=tile, cancel=req.cancel)
    t = preds[0].info["tile"]
    return preds, Placement((t.r0, t.c0), factor, plane0, level, stride)
