"""GUI-free orchestration of one annotation session on a napari viewer.

The dock widget is a thin Qt face over this class: it calls :meth:`prepare` on the main
thread (fast: reads layers and the viewed plane), :meth:`compute` in a worker thread
(encode + predict), then :meth:`accept` back on the main thread, which drops results that
are no longer current (slice or image changed, newer request).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from .. import __version__
from ..engine.backends.base import Prediction
from ..engine.errors import ImageError, LabelsError, NapariSam2Error, PromptError
from ..engine.segmenter import Segmenter
from .channels import VIEWED, ImageSource, image_source
from .commit import commit_preview
from .coords import full_resolution, napari_round, world_to_shown_data
from .layers import (
    channel_axis_of,
    check_channel_axis_first,
    ensure_fits,
    labels_matching,
    spatial_shape,
)
from .orientation import Orientation, orientation_of, oriented_source, viewed_index
from .prompts import PromptSet, collect_prompts, same_objects
from .tiles import check_tiled_prompts, predict_request, wants_tiles


@dataclass
class Request:
    token: int
    image_layer: object
    plane: tuple[int, ...]
    prompts: PromptSet
    source: ImageSource
    refine_id: int | None = None
    tiled: bool = False  # answered from the tile around the prompts (adapter.tiles)
    cancel: threading.Event = field(default_factory=threading.Event)
    orientation: Orientation | None = None  # the displayed axes (adapter.orientation)

    def oriented(self) -> Orientation:
        """The request's orientation (the last two axes when none was recorded)."""
        if self.orientation is not None:
            return self.orientation
        return Orientation.standard(self.image_layer.ndim, channel_axis_of(self.image_layer))


@dataclass
class Result:
    request: Request
    predictions: list[Prediction]
    candidate: int = 0
    info: dict = field(default_factory=dict)

    def masks(self) -> list[np.ndarray]:
        """Masks to preview/commit: the chosen candidate of each object."""
        out = []
        for p in self.predictions:
            k = min(self.candidate, len(p.candidates) - 1)
            out.append(p.candidates[k])
        return out


class SegmentationSession:
    """State of the widget: chosen layers, the segmenter, the pending preview."""

    def __init__(self, viewer, segmenter: Segmenter | None = None):
        self.viewer = viewer
        self.segmenter = segmenter
        self.image_layer = None
        self.points_layer = None
        self.shapes_layer = None
        self.labels_layer = None
        self.overwrite = False
        self.refine = False
        self.channel = VIEWED  # see adapter.channels: "viewed", "mean", "max", "composite", int
        self.level = 0  # resolution level of a multiscale image (adapter.tiles)
        self.tile_size: int | None = None  # tile for large planes (None: the model input)
        self.result: Result | None = None
        self._tokens = itertools.count(1)
        self._latest = 0
        self._source_sig = None
        self._max_cache: dict[int, int] = {}
        self.labels_version = 0  # bumped on every paint/undo/redo/data change (see commit.py)
        self._running: dict[int, threading.Event] = {}  # token -> cancel event
        self.notices: list[str] = []  # messages for the user, taken by the widget

    # ------------------------------------------------------------ requests
    def orientation(self) -> Orientation:
        """Which axes of the image the viewer displays (:mod:`.orientation`)."""
        img = self.checked_image()
        return orientation_of(self.viewer, img, channel_axis_of(img))

    def viewed_index(self) -> tuple[int, ...]:
        """Index of the viewed plane over the layer's non-displayed axes (channel axis
        included, first), in the orientation's order."""
        img = self.checked_image()
        return viewed_index(img, self.viewer.dims.point, self.orientation())

    def viewed_plane(self) -> tuple[int, ...]:
        """Index of the viewed plane over the non-channel leading axes (labels' index)."""
        return self.labels_plane(self.checked_image(), self.viewed_index())

    @staticmethod
    def labels_plane(img, index) -> tuple[int, ...]:
        """The labels' plane index from the image layer's full leading index ``index``
        (its channel axis dropped)."""
        ch = channel_axis_of(img)
        plane = tuple(v for i, v in enumerate(index) if i != ch)
        return plane[: len(spatial_shape(img)) - 2]

    def checked_image(self):
        """The chosen image layer, if the viewer shows a plane of it that can be segmented;
        else :class:`ImageError` saying what to do."""
        if self.image_layer is None:
            raise ImageError("No image layer: open an image and choose it in the widget.")
        if self.image_layer.ndim < 2:
            raise ImageError(f"Image '{self.image_layer.name}' has fewer than 2 dimensions.")
        if self.viewer.dims.ndisplay != 2:
            raise ImageError("Switch the viewer to 2D to segment the viewed plane.")
        check_channel_axis_first(self.image_layer)
        return self.image_layer

    def refine_mask(self, plane, orientation=None) -> tuple[np.ndarray | None, int | None]:
        if not self.refine or self.labels_layer is None:
            return None, None
        lid = int(self.labels_layer.selected_label)
        labels = self.labels_layer.data
        if orientation is not None:
            labels = orientation.view(labels)
        m = np.asarray(labels[tuple(plane)]) == lid
        if lid <= 0 or not m.any():
            raise PromptError(
                f"Refine: label {lid} has no pixel on this plane; select an existing label "
                "(picker tool or the label spin box) or untick 'Refine selected label'."
            )
        return m, lid

    def pick_label(self, world_position) -> int:
        """The label ID of the chosen Labels layer at a world position (0: none)."""
        layer = self.labels_layer
        if layer is None:
            raise LabelsError("No Labels layer chosen: pick one or press 'New labels'.")
        pos = np.asarray(world_position, float)[-layer.ndim :]
        try:
            shown = self.orientation().displayed_of(layer.ndim)  # the labels' shown axes
        except ImageError:
            shown = None
        idx = napari_round(world_to_shown_data(layer, pos, shown=shown))
        if np.any(idx < 0) or np.any(idx >= np.asarray(layer.data.shape)):
            return 0
        return int(layer.data[tuple(idx)])

    def prepare(self) -> Request:
        """Read layers and the viewed plane (main thread). Raises typed errors."""
        req = self._read()
        req.token = self._latest = next(self._tokens)
        self._running[req.token] = req.cancel
        return req

    def matches(self, req: Request) -> bool:
        """Would Segment ask now what ``req`` asked (same image, pixels, plane, prompts,
        refined label)?  Reads the layers (main thread); False when they cannot be read."""
        try:
            now = self._read()
        except NapariSam2Error:
            return False
        return (
            now.image_layer is req.image_layer
            and now.plane == req.plane
            and now.refine_id == req.refine_id
            and now.tiled == req.tiled
            and now.oriented().key() == req.oriented().key()
            and now.source.signature() == req.source.signature()
            and same_objects(now.prompts.objects, req.prompts.objects)
        )

    def _read(self) -> Request:
        """What Segment would ask now, as a request without a token."""
        if self.segmenter is None:
            raise ImageError("The model is still loading: wait for the status line to say ready.")
        img = self.checked_image()
        orient = self.orientation()
        index = self.viewed_index()
        plane = self.labels_plane(img, index)
        hw = orient.plane_shape(spatial_shape(img))
        tiled = wants_tiles(self, img, self.level, orient)
        if tiled and self.refine:  # before reading the labels plane
            tiled = check_tiled_prompts(True, hw, self.level)
        refine_mask, refine_id = self.refine_mask(plane, orient)
        prompts = collect_prompts(
            img,
            plane,
            hw,
            points_layer=self.points_layer,
            shapes_layer=self.shapes_layer,
            world_point=self.viewer.dims.point,
            refine_mask=refine_mask,
            orientation=orient,
        )
        prompts.objects = [o.validated(hw) for o in prompts.objects]  # fail fast, main thread
        if tiled:
            masks = any(o.mask is not None for o in prompts.objects)
            tiled = check_tiled_prompts(masks, hw, self.level)
        source = image_source(self.viewer, img, self.channel, index, self.level if tiled else 0)
        source = oriented_source(source, orient)
        return Request(0, img, plane, prompts, source, refine_id, tiled, orientation=orient)

    def compute(self, req: Request) -> Result:
        """Encode (cached) and predict — the slow part, for a worker thread."""
        seg = self.segmenter
        try:
            if req.tiled:
                preds, placement = predict_request(self, req)
                info = {"stats": seg.stats.as_dict(), "placement": placement}
                return Result(req, preds, 0, info)
            self.ensure_image(req.source)
            preds = seg.predict(  # untiled request: whole-plane masks
                req.plane, objects=req.prompts.objects, cancel=req.cancel, tile=False
            )
        finally:
            self._running.pop(req.token, None)
        return Result(req, preds, 0, {"stats": seg.stats.as_dict()})

    def is_current(self, req: Request) -> bool:
        """Is this request still what the user is looking at?"""
        if req.token != self._latest or req.image_layer is not self.image_layer:
            return False
        try:
            return self.shows_plane_of(req)
        except ImageError:
            return False

    def shows_plane_of(self, req: Request) -> bool:
        """Is ``req``'s plane the one viewed now (same displayed axes, same index)?
        Raises :class:`ImageError` when no plane can be segmented now."""
        same_axes = req.orientation is None or self.orientation().key() == req.orientation.key()
        return req.plane == self.viewed_plane() and same_axes

    def accept(self, result: Result) -> bool:
        """Keep a finished result as the preview if still current."""
        if not self.is_current(result.request):
            return False
        self.result = result
        return True

    def cancel(self, req: Request | None = None) -> None:
        """Stop ``req`` (default: every request still running) and drop its result.

        A running SAM 2 encode stops between two image-encoder blocks.
        """
        if req is not None:
            req.cancel.set()
            self._running.pop(req.token, None)
            return
        for ev in list(self._running.values()):  # the worker pops entries meanwhile
            ev.set()
        self._running.clear()
        self._latest = next(self._tokens)

    def cycle_candidate(self) -> int:
        if self.result is None:
            return 0
        n = max(len(p.candidates) for p in self.result.predictions)
        self.result.candidate = (self.result.candidate + 1) % n
        return self.result.candidate

    # ---------------------------------------------------------------- image
    def ensure_image(self, source: ImageSource, *, data=None, signature=None) -> None:
        """Hand ``source`` to the segmenter unless it holds it already (worker thread).

        ``data``/``signature``: another view of the source's pixels and its signature
        (e.g. the strided view of :mod:`.tiles`)."""
        sig = source.signature() if signature is None else signature
        if sig != self._source_sig or self.segmenter.source is None:
            self.segmenter.set_image(source.data if data is None else data, **source.kwargs)
            self._source_sig = sig

    def holds_image(self, source: ImageSource) -> bool:
        """Does the segmenter hold ``source`` (same pixels, same normalisation)?"""
        return self.segmenter is not None and source.signature() == self._source_sig

    def forget_image(self) -> None:
        """The next request hands its image to the segmenter again (a new model)."""
        self._source_sig = None

    # --------------------------------------------------------------- commit
    def next_id(self, labels_layer) -> int:
        """The next free label ID of ``labels_layer`` (its max + 1, cached)."""
        key = id(labels_layer)
        if key not in self._max_cache:
            data = labels_layer.data
            self._max_cache[key] = int(np.max(data)) if data.size else 0
        return self._max_cache[key] + 1

    def cached_max(self, labels_layer) -> int | None:
        """The cached max ID of ``labels_layer`` (None: not known now)."""
        return self._max_cache.get(id(labels_layer))

    def invalidate_max(self, event=None) -> None:
        self._max_cache.clear()
        self.labels_version += 1

    def fit_ids(self, labels_layer, max_id: int) -> None:
        """Widen the layer's dtype for ``max_id`` if needed, with a notice for the user."""
        if ensure_fits(labels_layer, max_id):
            self.notices.append(
                f"Labels layer '{labels_layer.name}' widened to {labels_layer.data.dtype} "
                "for more IDs (the undo history starts again)."
            )

    def commit(self) -> list[int]:
        """Write the preview into the Labels layer as one undo step; returns the IDs
        (:func:`napari_sam2.adapter.commit.commit_preview`)."""
        return commit_preview(self)

    def export(self, out_dir) -> list:
        """Mask PNG per object + RGBA cut-out from the image, for the viewed plane."""
        from ..io.exports.objects import export_object_masks, safe_child, save_cutout

        img = self.checked_image()
        msg = labels_matching(self.labels_layer, img)
        if msg:
            raise LabelsError(msg)
        plane = self.viewed_plane()
        orient = self.orientation()
        labels = orient.view(self.labels_layer.data)
        paths = export_object_masks(labels, out_dir, plane if plane else None)
        if channel_axis_of(img) is None:
            lab = np.asarray(labels[plane])
            raw = np.asarray(orient.image_view(full_resolution(img), bool(img.rgb))[plane])
            limits = None if img.rgb else tuple(img.contrast_limits)
            for lid in np.unique(lab[lab > 0]):
                name = f"cutout_{int(lid):04d}" + (
                    f"_plane-{'-'.join(map(str, plane))}" if plane else ""
                )
                paths.append(
                    save_cutout(safe_child(out_dir, f"{name}.png"), raw, lab == lid, limits)
                )
        return paths

    def record_commit(self, labels_layer, res: Result, written, known_max=None) -> None:
        """A commit of ``res`` wrote ``written`` into ``labels_layer``: the max-ID cache
        (``known_max``: the cached max before the write, whose paint event emptied it) and
        the provenance in the layer's metadata (saved by our TIFF writer).

        ``written``: ``(label_id, object_index)`` pairs, the index into the request's
        prompts.  Every commit appends its own facts (model, normalisation, image, plane)
        to ``commits``; each object entry names its commit, so a later commit with another
        model or window never rewrites what an earlier object was made with.  The top-level
        facts repeat the latest commit's (for readers of the single-commit form).
        """
        if known_max is not None and written:
            self._max_cache[id(labels_layer)] = max([known_max, *(lid for lid, _ in written)])
        meta = labels_layer.metadata.setdefault("napari_sam2", {})
        facts = {k: v for k, v in self.segmenter.describe().items() if k != "cache"}
        facts["image"] = res.request.source.describe()
        facts["plugin_version"] = __version__
        meta.update(facts)
        commits = meta.setdefault("commits", [])
        commits.append(
            {
                **facts,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "plane": list(res.request.plane),
                "ids": [int(lid) for lid, _ in written],
            }
        )
        objs = meta.setdefault("objects", {})
        prompts = res.request.prompts.objects
        for lid, k in written:
            d = prompts[k].to_dict() if k is not None and k < len(prompts) else {}
            d["plane"] = list(res.request.plane)
            d["commit"] = len(commits) - 1
            objs.setdefault(int(lid), []).append(d)
