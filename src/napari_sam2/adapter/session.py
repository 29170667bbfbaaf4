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
from ..engine.edits import plan_edits
from ..engine.errors import ImageError, LabelsError, PromptError
from ..engine.labels import KEEP, OVERWRITE
from ..engine.segmenter import Segmenter
from .channels import VIEWED, ImageSource, image_source
from .coords import napari_round, world_to_shown_data
from .layers import (
    channel_axis_of,
    check_channel_axis_first,
    ensure_fits,
    full_resolution,
    labels_matching,
    spatial_shape,
    write_edits,
)
from .orientation import Orientation, orientation_of, oriented_source, viewed_index
from .prompts import PromptSet, collect_prompts
from .tiles import check_tiled_prompts, commit_tiled, predict_request, wants_tiles


@dataclass
class Request:
    token: int
    image_layer: object
    plane: tuple[int, ...]
    prompts: PromptSet
    source: ImageSource
    refine_id: int | None = None
    tiled: bool = False  # answered from the tile around the prompts (adapter.tiles)
    orientation: Orientation | None = None  # the displayed axes (adapter.orientation)
    cancel: threading.Event = field(default_factory=threading.Event)

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
        return orientation_of(self.viewer, self._image())

    def viewed_index(self) -> tuple[int, ...]:
        """Index of the viewed plane over the layer's non-displayed axes (channel axis
        included, first), in the orientation's order."""
        img = self._image()
        return viewed_index(img, self.viewer.dims.point, self.orientation())

    def viewed_plane(self) -> tuple[int, ...]:
        """Index of the viewed plane over the non-channel leading axes (labels' index)."""
        return self._labels_plane(self._image(), self.viewed_index())

    @staticmethod
    def _labels_plane(img, index) -> tuple[int, ...]:
        """The labels' plane index from the layer's full leading index (channel dropped)."""
        ch = channel_axis_of(img)
        plane = tuple(v for i, v in enumerate(index) if i != ch)
        return plane[: len(spatial_shape(img)) - 2]

    def _image(self):
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
        if self.segmenter is None:
            raise ImageError("The model is still loading: wait for the status line to say ready.")
        img = self._image()
        orient = self.orientation()
        index = self.viewed_index()
        plane = self._labels_plane(img, index)
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
        token = next(self._tokens)
        self._latest = token
        req = Request(token, img, plane, prompts, source, refine_id, tiled, orient)
        self._running[token] = req.cancel
        return req

    def compute(self, req: Request) -> Result:
        """Encode (cached) and predict — the slow part, for a worker thread."""
        seg = self.segmenter
        try:
            if req.tiled:
                preds, placement = predict_request(self, req)
                info = {"stats": seg.stats.as_dict(), "placement": placement}
                return Result(req, preds, 0, info)
            sig = req.source.signature()
            if sig != self._source_sig or seg.source is None:
                seg.set_image(req.source.data, **req.source.kwargs)
                self._source_sig = sig
            preds = seg.predict(req.plane, objects=req.prompts.objects, cancel=req.cancel)
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

    def _same_orientation(self, req: Request) -> bool:
        """Does the viewer display the axes ``req`` was made on (the same engine plane)?"""
        o = req.orientation
        return o is None or self.orientation().key() == o.key()

    def shows_plane_of(self, req: Request) -> bool:
        """Is ``req``'s plane the one viewed now (same displayed axes, same index)?
        Raises :class:`ImageError` when no plane can be segmented now."""
        return req.plane == self.viewed_plane() and self._same_orientation(req)

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

    # --------------------------------------------------------------- commit
    def _next_id(self, labels_layer) -> int:
        key = id(labels_layer)
        if key not in self._max_cache:
            data = labels_layer.data
            self._max_cache[key] = int(np.max(data)) if data.size else 0
        return self._max_cache[key] + 1

    def invalidate_max(self, event=None) -> None:
        self._max_cache.clear()
        self.labels_version += 1

    def commit(self) -> list[int]:
        """Write the preview into the Labels layer as one undo step; returns the IDs."""
        res = self.result
        if res is None:
            raise PromptError("Nothing to commit: press Segment first.")
        if not self.is_current(res.request) and not self.shows_plane_of(res.request):
            raise PromptError("The preview belongs to another plane: segment again here.")
        if res.info.get("placement") is not None:
            return commit_tiled(self, res, res.info["placement"])
        msg = labels_matching(self.labels_layer, res.request.image_layer)
        if msg:
            raise LabelsError(msg)
        layer = self.labels_layer
        masks = res.masks()
        preds = [Prediction(m[None], np.ones(1)) for m in masks]
        rid = res.request.refine_id
        if not any(m.any() for m in masks):
            raise PromptError("The predicted mask is empty: nothing was written.")
        start = None if rid is not None else self._next_id(layer)
        known_max = self._max_cache.get(id(layer))  # the write's paint event empties it
        if ensure_fits(layer, rid if rid is not None else start + len(masks) - 1):
            self.notices.append(
                f"Labels layer '{layer.name}' widened to {layer.data.dtype} for more IDs "
                "(the undo history starts again)."
            )
        orient = res.request.oriented()
        labels = orient.view(layer.data)  # the plane's axes last
        edits = plan_edits(
            labels,
            preds,
            res.request.plane,
            label_id=rid,
            policy=OVERWRITE if self.overwrite else KEEP,
            replace=rid is not None,
            start_id=start,
        )
        ids = write_edits(layer, [orient.data_edit(e) for e in edits])
        if not ids:  # every mask lies on other objects (keep) or reproduces the object
            self.notices.append(_nothing_new(labels, res.request.plane, masks, rid))
            self.result = None
            return []
        if known_max is not None:
            self._max_cache[id(layer)] = max([known_max, *ids])
        self._record(res, [(e.label_id, e.object_index) for e in edits if e.size])
        self.result = None
        return ids

    def export(self, out_dir) -> list:
        """Mask PNG per object + RGBA cut-out from the image, for the viewed plane."""
        from ..io.exports import export_object_masks, safe_child, save_cutout

        img = self._image()
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

    def _record(self, res: Result, written) -> None:
        """Provenance in the Labels layer's metadata (saved by our TIFF writer).

        ``written``: ``(label_id, object_index)`` pairs, the index into the request's
        prompts.  Every commit appends its own facts (model, normalisation, image, plane)
        to ``commits``; each object entry names its commit, so a later commit with another
        model or window never rewrites what an earlier object was made with.  The top-level
        facts repeat the latest commit's (for readers of the single-commit form).
        """
        meta = self.labels_layer.metadata.setdefault("napari_sam2", {})
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


def _nothing_new(labels, plane, masks, refine_id) -> str:
    """The notice for a commit that changes no pixel: which object(s) the mask lies on."""
    sel = np.zeros(np.shape(masks[0]), bool)
    for m in masks:
        sel |= m
    under = np.asarray(labels[tuple(plane)])[sel]
    ids = [int(v) for v in np.unique(under) if v]
    if refine_id is not None and ids in ([], [refine_id]):
        return f"Nothing new to write: the mask is object {refine_id} already."
    if not ids:
        return "Nothing new to write: the mask is empty."
    which = f"object {ids[0]}" if len(ids) == 1 else "objects " + ", ".join(map(str, ids))
    return f"Nothing new to write: the mask lies on {which}."
