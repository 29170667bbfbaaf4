"""The scripted API on planes larger than the model input: the tiled path by itself.

:meth:`Segmenter.predict <napari_sam2.engine.Segmenter.predict>` and
:meth:`~napari_sam2.engine.Segmenter.segment_into` call :func:`tile_size_for` first; on a
plane larger than one tile (SAM 2's input size, 2048 px for the classical backend) they
read, normalise and encode only the window around the prompts
(:func:`napari_sam2.engine.tiling.predict_tiled`, what the widget does), so a click on a
lazy 24 576² plane reads a few chunks instead of the whole plane.

The predictions are then **bbox-local**: ``Prediction.candidates`` covers the bounding box
of the candidates only, and ``Prediction.offset`` is that box's top-left (row, col) in
the plane; ``Prediction.plane_mask(shape)`` builds the full-plane mask when one is
needed.  ``tile=False`` keeps the whole-plane path (full-plane masks, offset (0, 0)).
"""

from __future__ import annotations

import numpy as np

from . import labels as _labels
from .backends.base import Prediction
from .errors import LabelsError
from .prompts import Box, MaskPrompt, ObjectPrompt, Points


def tile_size_for(seg, plane_shape, tile) -> int | None:
    """The tile size to use, or None for the whole-plane path.

    ``tile``: None (auto: tiles when the plane is larger than one tile), True (always),
    False (never), or an int (tiles of that size when the plane is larger).
    """
    from .tiling import default_tile_size

    if tile is False:
        return None
    size = default_tile_size(seg) if tile is None or tile is True else int(tile)
    if size <= 0:
        raise ValueError(f"tile must be None, a bool or a positive size, not {tile!r}.")
    if tile is True or max(int(v) for v in plane_shape) > size:
        return size
    return None


def _bbox_local(pred: Prediction, offset) -> Prediction:
    """Crop the candidates to the bounding box of their union; offset in plane pixels."""
    any_px = pred.candidates.any(axis=0)
    r0, c0 = offset
    if any_px.any():
        rows = np.nonzero(any_px.any(axis=1))[0]
        cols = np.nonzero(any_px.any(axis=0))[0]
        sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        pred.candidates = np.ascontiguousarray(pred.candidates[(slice(None), *sl)])
        r0, c0 = r0 + int(rows[0]), c0 + int(cols[0])
    else:
        pred.candidates = pred.candidates[:, :0, :0]
    pred.info["offset"] = (int(r0), int(c0))
    return pred


def predict(seg, index, objects, *, multimask, cancel, size: int) -> list[Prediction]:
    """Predict on the ``size`` window around the prompts (only it is read and encoded,
    cached per window); returns bbox-local predictions (see the module notes).

    A mask prompt (plane-shaped) is cropped to the window; the window is centred on the
    box of all prompts, masks included."""
    from .tiling import tile_around, tile_embedding

    src = seg.require_source()
    lo = np.full(2, np.inf)
    hi = np.full(2, -np.inf)
    for o in objects:
        boxes = [b for b in (o.box, o.mask.bbox() if o.mask is not None else None) if b]
        for b in boxes:
            lo = np.minimum(lo, [b.r0, b.c0])
            hi = np.maximum(hi, [b.r1, b.c1])
        if o.points is not None:
            lo = np.minimum(lo, o.points.coords.min(0))
            hi = np.maximum(hi, o.points.coords.max(0))
    tile = tile_around(src.plane_shape, lo[0], lo[1], hi[0], hi[1], size)
    emb = tile_embedding(seg, index, tile, cancel=cancel)
    if cancel is not None and cancel.is_set():
        from .errors import Cancelled

        raise Cancelled("Cancelled.")
    local = [_to_tile(o, tile) for o in objects]
    preds = seg.backend.predict(emb, local, multimask=multimask)
    for p, o in zip(preds, objects, strict=True):
        p.info["tile"] = tile
        p.prompt = o
    return [_bbox_local(p, (tile.r0, tile.c0)) for p in preds]


def _to_tile(o: ObjectPrompt, tile) -> ObjectPrompt:
    """The prompt in the window's coordinates (a mask prompt cropped to the window)."""
    r0, c0 = tile.r0, tile.c0
    pts = box = mask = None
    if o.points is not None:
        pts = Points(o.points.coords - [r0, c0], o.points.labels)
    if o.box is not None:
        b = o.box
        box = Box(b.r0 - r0, b.c0 - c0, b.r1 - r0, b.c1 - c0)
    if o.mask is not None:
        mask = MaskPrompt(np.ascontiguousarray(o.mask.mask[tile.slices]))
    return ObjectPrompt(points=pts, box=box, mask=mask, label_id=o.label_id, meta=o.meta)


def segment_into(labels, preds, index, *, label_id, policy, replace) -> list[int]:
    """Write bbox-local predictions into ``labels``: only each object's box is read and
    written (with ``replace``, the window it was predicted in: the object's old pixels
    there are replaced)."""
    if label_id is not None and len(preds) > 1:
        raise LabelsError("label_id can only be given for a single object.")
    next_id = _labels.next_label_id(labels) if label_id is None else int(label_id)
    index = tuple(int(i) for i in index)
    ids = []
    for p in preds:
        mask = p.mask
        if not mask.any():
            continue
        r0, c0 = p.offset
        tile = p.info.get("tile")
        if replace and tile is not None:  # the old pixels in the window go too
            inner = np.zeros(tile.shape, bool)
            dr, dc = r0 - tile.r0, c0 - tile.c0
            inner[dr : dr + mask.shape[0], dc : dc + mask.shape[1]] = mask
            mask, r0, c0 = inner, tile.r0, tile.c0
        box = (slice(r0, r0 + mask.shape[0]), slice(c0, c0 + mask.shape[1]))
        view = labels[index + box]
        edit = _labels.plan_object_write(
            view, mask, label_id=next_id, policy=policy, replace=replace
        )
        if not edit.size:
            continue
        rr, cc = edit.indices
        lead = tuple(np.full(rr.shape, i, np.intp) for i in index)
        labels[lead + (rr + r0, cc + c0)] = edit.values
        ids.append(next_id)
        if label_id is None:
            next_id += 1
    return ids
