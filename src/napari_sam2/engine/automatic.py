"""Automatic instance segmentation ("segment everything") of a plane or a stack.

Two ways to find every object of a plane, chosen by the segmenter's backend:

- **SAM 2** (:mod:`.automatic_sam2`): a grid of point prompts decoded on the plane's cached
  embedding, filtered by predicted IoU, stability, NMS and area (what SAM 2's
  ``SAM2AutomaticMaskGenerator`` does, restructured for speed);
- **classical** (weight-free, :func:`classical_instances`): Otsu threshold of the smoothed
  plane, then a watershed of the distance transform seeded by its h-maxima, which splits
  touching bright blobs such as nuclei.

Both give candidate masks that :func:`resolve_overlaps` turns into one non-overlapping
instance labels plane (higher score wins, small holes filled, IDs 1..N in raster order of
each object's first pixel).  :func:`plan_everything` turns the planes' instances into
:class:`~.labels.LabelEdit` objects (new IDs from ``max + 1``, keep/overwrite policy),
so a script applies them with :func:`~.labels.apply_edit` and the napari adapter writes
them as one undo step.  Nothing is written before every requested plane is done, so a
cancel or an error leaves the labels untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from . import labels as _labels
from .errors import Cancelled, ImageError, LabelsError, ModelError

ALL_PLANES = "all"
_PLAN_KWARGS = ("policy", "pixel_size", "cancel", "progress")


@dataclass(frozen=True)
class EverythingParams:
    """Settings of automatic segmentation (areas in pixels; see :func:`area_in_pixels`).

    ``points_per_side`` … ``box_nms_thresh`` are SAM 2's (same meaning as in
    ``SAM2AutomaticMaskGenerator``); ``sigma`` and ``split_h`` the classical backend's
    (smoothing and how deep a dip between two touching blobs must be to split them, in
    pixels of the distance transform).  ``hole_area``: holes of an object up to this area
    are filled (0: none).  Planes larger than ``tile_size`` (default: SAM 2's input
    size, 2048 px for the classical backend) are processed in tiles overlapping by
    ``tile_overlap`` px (see :mod:`.tiling`); the overlap should exceed the objects' size.
    """

    points_per_side: int = 32
    points_per_batch: int = 256
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_area: float = 0.0
    max_area: float | None = None
    hole_area: float = 0.0
    sigma: float = 1.0
    split_h: float = 0.7
    tile_size: int | None = None
    tile_overlap: int = 128


def area_in_pixels(area, pixel_size=None) -> float | None:
    """An area given in physical units² → pixels, using ``pixel_size`` (row, col) per pixel.

    ``None`` stays None; without ``pixel_size`` the area is already in pixels.
    """
    if area is None:
        return None
    area = float(area)
    if area < 0:
        raise ValueError(f"Areas must be >= 0, got {area}.")
    if pixel_size is None:
        return area
    sy, sx = (abs(float(v)) for v in pixel_size)
    if sy <= 0 or sx <= 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}.")
    return area / (sy * sx)


def check_cancel(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Segment everything cancelled.")


# --------------------------------------------------------------------- classical
def classical_instances(
    smooth: np.ndarray, params: EverythingParams = EverythingParams(), *, threshold=None
):
    """Weight-free instances of a smoothed, normalised grey plane (float, [0, 1]).

    Otsu threshold; the objects are the side of it that covers less of the plane (bright
    nuclei on a dark background, or the reverse); holes filled; touching objects split by
    a watershed of the distance transform seeded by its ``split_h``-maxima.  Returns
    ``(labels, scores)``: int32 labels 1..N (raster order) and one score (1.0) per object.
    ``threshold``: ``(t, bright)`` to use instead of the plane's own Otsu threshold and
    polarity (tiles of one plane share the whole plane's).
    """
    s = np.asarray(smooth, dtype=np.float32)
    finite = s[np.isfinite(s)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.zeros(s.shape, np.int32), np.zeros(0, np.float32)
    if threshold is None:
        t = float(threshold_otsu(finite))
        fg = s > t
        if fg.mean() > 0.5:  # dark objects on a bright background
            fg = ~fg
    else:
        t, bright = threshold
        fg = s > t if bright else s <= t
    fg = ndi.binary_fill_holes(fg)
    dist = ndi.distance_transform_edt(fg)
    dist = gaussian(dist, 1.0, preserve_range=True)
    markers, n = ndi.label(h_maxima(dist, params.split_h) & fg)
    if n == 0:
        return np.zeros(s.shape, np.int32), np.zeros(0, np.float32)
    lab = watershed(-dist, markers, mask=fg).astype(np.int32)
    lab = filter_areas(lab, params.min_area, params.max_area)
    lab = relabel_raster(lab)
    return lab, np.ones(int(lab.max()), np.float32)


# ------------------------------------------------------------- shared steps
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


# ---------------------------------------------------------------- per plane
def plane_instances(
    segmenter, index, params: EverythingParams, *, cancel=None, progress=None
) -> np.ndarray:
    """Instance labels (int32, 1..N) of one plane of the segmenter's image."""
    from .backends.classical import ClassicalBackend
    from .tiling import default_tile_size, everything_tiled

    backend = segmenter.backend
    tile = int(params.tile_size or default_tile_size(segmenter))
    if max(segmenter.source.plane_shape) > tile:
        return everything_tiled(segmenter, index, params, cancel=cancel, progress=progress)
    emb = segmenter.embedding(index, cancel=cancel)
    check_cancel(cancel)
    if isinstance(backend, ClassicalBackend):
        smooth = emb["smooth"]
        if params.sigma != backend.sigma:
            gray = segmenter.source.gray_image(index)
            smooth = gaussian(gray, params.sigma, preserve_range=True)
        lab, _ = classical_instances(smooth, params)
        if params.hole_area:
            lab = fill_small_holes(lab, params.hole_area)
        if progress is not None:
            progress(1, 1)
        return lab
    if getattr(backend, "name", None) == "sam2" and hasattr(backend, "_predictor"):
        from .automatic_sam2 import sam2_candidates

        cand = sam2_candidates(backend, emb, params, cancel=cancel, progress=progress)
        lab, _ = resolve_overlaps(cand.local_masks(), cand.scores, emb["orig_hw"], params)
        return lab
    raise ModelError(
        f"The {getattr(backend, 'name', type(backend).__name__)!r} backend has no automatic "
        "mode: use the SAM 2 or the classical backend."
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
    src = segmenter._require_source()
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
        check_cancel(cancel)
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
    src = segmenter._require_source()
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
        check_cancel(kwargs.get("cancel"))
        return lab
    edits = plan_everything(segmenter, labels, plane, **kwargs)
    for e in edits:
        _labels.apply_edit(labels, e)
    return labels
