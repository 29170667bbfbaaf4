"""Automatic instance segmentation ("segment everything") of a plane or a stack.

Two ways to find every object of a plane, chosen by the segmenter's backend:

- **SAM 2** (:mod:`napari_sam2.engine.backends.sam2_automatic`): a grid of point prompts decoded on the plane's cached
  embedding, filtered by predicted IoU, stability, NMS and area (what SAM 2's
  ``SAM2AutomaticMaskGenerator`` does, restructured for speed);
- **classical** (weight-free, :func:`.classical.classical_instances`): Otsu threshold of the smoothed
  plane, then a watershed of the distance transform seeded by its h-maxima, which splits
  touching bright blobs such as nuclei.

Each backend declares how (``automatic_instances``, see
:class:`~napari_sam2.engine.backends.base.Predictor`).  Both give candidate masks that
:func:`.postprocess.resolve_overlaps` turns into one non-overlapping
instance labels plane (higher score wins, small holes filled, IDs 1..N in raster order of
each object's first pixel).  :func:`plan_everything` turns the planes' instances into
:class:`~.labels.LabelEdit` objects (new IDs from ``max + 1``, keep/overwrite policy),
so a script applies them with :func:`~.labels.apply_edit` and the napari adapter writes
them as one undo step.  Nothing is written before every requested plane is done, so a
cancel or an error leaves the labels untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .. import labels as _labels
from ..cancel import check_cancel
from ..errors import ImageError, LabelsError
from ..tiling import default_tile_size
from .classical import classical_instances
from .params import (
    ALL_PLANES,
    CANCELLED,
    AutomaticRegion,
    EverythingParams,
    area_in_pixels,
    automatic_instances,
)
from .postprocess import fill_small_holes, filter_areas, relabel_raster, resolve_overlaps
from .tiled import everything_tiled

_PLAN_KWARGS = ("policy", "pixel_size", "cancel", "progress")
__all__ = [
    "ALL_PLANES",
    "AutomaticRegion",
    "EverythingParams",
    "area_in_pixels",
    "classical_instances",
    "fill_small_holes",
    "filter_areas",
    "plan_everything",
    "plane_instances",
    "relabel_raster",
    "resolve_overlaps",
    "segment_everything",
]


# ---------------------------------------------------------------- per plane
def plane_instances(
    segmenter, index, params: EverythingParams, *, cancel=None, progress=None
) -> np.ndarray:
    """Instance labels (int32, 1..N) of one plane of the segmenter's image; the backend
    finds them (its ``automatic_instances`` capability), tile by tile on large planes."""
    backend = segmenter.backend
    tile = int(params.tile_size or default_tile_size(segmenter))
    if max(segmenter.source.plane_shape) > tile:
        return everything_tiled(segmenter, index, params, cancel=cancel, progress=progress)
    emb = segmenter.embedding(index, cancel=cancel)
    check_cancel(cancel, CANCELLED)
    region = AutomaticRegion(
        embedding=lambda: emb, gray=lambda: segmenter.source.gray_image(index)
    )
    missing = (
        f"The {getattr(backend, 'name', type(backend).__name__)!r} backend has no automatic "
        "mode: use the SAM 2 or the classical backend."
    )
    return automatic_instances(
        backend, region, params, cancel=cancel, progress=progress, missing=missing
    )


def _planes(src, plane) -> list[tuple[int, ...]]:
    if isinstance(plane, str):
        if plane != ALL_PLANES:
            raise ImageError(f"plane must be an index or {ALL_PLANES!r}, not {plane!r}.")
        return [tuple(int(i) for i in ix) for ix in src.iter_indices()]
    return [src.check_index(plane)]


def _params(kwargs, pixel_size) -> EverythingParams:
    p = EverythingParams(**kwargs)
    if p.points_per_side < 1 or p.points_per_batch < 1:
        raise ValueError("points_per_side and points_per_batch must be >= 1.")
    changes = {
        "min_area": area_in_pixels(p.min_area, pixel_size) or 0.0,
        "max_area": area_in_pixels(p.max_area, pixel_size),
        "hole_area": area_in_pixels(p.hole_area, pixel_size) or 0.0,
    }
    return EverythingParams(**{**p.__dict__, **changes})


def plan_everything(
    segmenter,
    labels,
    plane=(),
    *,
    policy: str = _labels.KEEP,
    pixel_size: Sequence[float] | None = None,
    cancel=None,
    progress=None,
    **settings,
) -> list[_labels.LabelEdit]:
    """Segment every object of ``plane`` (or of every plane with ``plane="all"``) and plan
    the writes into ``labels`` (not modified).  New IDs run from ``max(labels) + 1`` in
    plane order, then raster order; ``policy`` as for prompts.  ``settings``: the fields of
    :class:`EverythingParams`; areas in physical units² when ``pixel_size`` (row, col) is
    given.  ``progress(done, total)`` is called as work advances.
    """
    src = segmenter.require_source()
    params = _params(settings, pixel_size)
    if policy not in _labels.POLICIES:
        raise LabelsError(f"policy must be one of {_labels.POLICIES}, not {policy!r}.")
    _labels.check_stack_labels(labels, src)
    planes = _planes(src, plane)
    next_id = _labels.next_label_id(labels)
    edits: list[_labels.LabelEdit] = []
    scale = 1000
    for p, index in enumerate(planes):

        def sub(done, total, _p=p):
            if progress is not None:
                progress(_p * scale + int(scale * done / max(total, 1)), len(planes) * scale)

        lab = plane_instances(segmenter, index, params, cancel=cancel, progress=sub)
        check_cancel(cancel, CANCELLED)
        for sl_id, sl in enumerate(ndi.find_objects(lab), start=1):
            if sl is None:
                continue
            mask = np.zeros(lab.shape, bool)
            mask[sl] = lab[sl] == sl_id
            edit = _labels.plan_object_write(
                labels, mask, index=index, label_id=next_id, policy=policy
            )
            if edit.size:
                edits.append(edit)
                next_id += 1
        if progress is not None:
            progress((p + 1) * scale, len(planes) * scale)
    return edits


def segment_everything(segmenter, labels=None, plane=(), **kwargs):
    """See :meth:`napari_sam2.engine.Segmenter.segment_everything`."""
    src = segmenter.require_source()
    if labels is None:
        if isinstance(plane, str):
            labels = np.zeros(src.index_shape + src.plane_shape, np.int32)
            for e in plan_everything(segmenter, labels, plane, **kwargs):
                _labels.apply_edit(labels, e)
            return labels
        index = src.check_index(plane)
        params = _params(
            {k: v for k, v in kwargs.items() if k not in _PLAN_KWARGS},
            kwargs.get("pixel_size"),
        )
        lab = plane_instances(
            segmenter,
            index,
            params,
            cancel=kwargs.get("cancel"),
            progress=kwargs.get("progress"),
        )
        check_cancel(kwargs.get("cancel"), CANCELLED)
        return lab
    edits = plan_everything(segmenter, labels, plane, **kwargs)
    for e in edits:
        _labels.apply_edit(labels, e)
    return labels
