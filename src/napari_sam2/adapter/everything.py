"""Segment everything from napari layers: prepare (main thread), compute (worker), apply
(main thread, one undo step on the Labels layer)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ..engine import automatic
from ..engine.errors import ImageError, LabelsError, PromptError
from ..engine.labels import KEEP, OVERWRITE
from .channels import image_source
from .layers import labels_matching, write_edits
from .orientation import Orientation, oriented_source


@dataclass
class EverythingRequest:
    image_layer: object
    labels_layer: object
    plane: tuple | str  # the labels' plane index, or "all"
    source: object  # adapter.channels.ImageSource
    settings: dict
    policy: str
    pixel_size: tuple[float, float]
    cancel: threading.Event = field(default_factory=threading.Event)
    orientation: Orientation | None = None  # the displayed axes (None: the last two)

    def labels(self):
        """The labels with the displayed plane's axes last (what ``plane`` indexes)."""
        data = self.labels_layer.data
        return data if self.orientation is None else self.orientation.view(data)


def pixel_size_of(image_layer, orientation: Orientation | None = None) -> tuple[float, float]:
    """World size of one pixel along the displayed axes (default: the image's last two)."""
    scale = np.asarray(image_layer.scale, float)
    scale = scale[list(orientation.image_axes[-2:])] if orientation else scale[-2:]
    return float(abs(scale[0])), float(abs(scale[1]))


def prepare_everything(
    session, *, all_planes: bool = False, settings: dict | None = None
) -> EverythingRequest:
    """Read the layers and the viewed plane (main thread); raises typed errors.

    ``settings``: fields of :class:`~napari_sam2.engine.automatic.EverythingParams`,
    areas in the image layer's world units² (pixels when its scale is 1).
    """
    if session.segmenter is None:
        raise ImageError("The model is still loading: wait for the status line to say ready.")
    img = session.checked_image()
    msg = labels_matching(session.labels_layer, img)
    if msg:
        raise LabelsError(msg)
    index = session.viewed_index()
    plane = automatic.ALL_PLANES if all_planes else session.labels_plane(img, index)
    orient = session.orientation()
    source = oriented_source(image_source(session.viewer, img, session.channel, index), orient)
    settings = dict(settings or {})
    unknown = set(settings) - set(automatic.EverythingParams.__dataclass_fields__)
    if unknown:
        raise PromptError(f"Unknown segment-everything settings: {sorted(unknown)}.")
    return EverythingRequest(
        img,
        session.labels_layer,
        plane,
        source,
        settings,
        OVERWRITE if session.overwrite else KEEP,
        pixel_size_of(img, orient),
        orientation=orient,
    )


def compute_everything(session, req: EverythingRequest, progress=None) -> list:
    """Segment (worker thread) and plan the writes; the labels are not modified."""
    session.ensure_image(req.source)
    return automatic.plan_everything(
        session.segmenter,
        req.labels(),
        req.plane,
        policy=req.policy,
        pixel_size=req.pixel_size,
        cancel=req.cancel,
        progress=progress,
        **req.settings,
    )


def apply_everything(session, req: EverythingRequest, edits) -> list[int]:
    """Write the planned objects into the Labels layer as one undo step (main thread)."""
    layer = req.labels_layer
    if layer is not session.labels_layer:
        raise LabelsError("The labels layer changed meanwhile: nothing was written.")
    if not edits:
        return []
    session.fit_ids(layer, max(e.label_id for e in edits))
    if req.orientation is not None:  # indices in the labels array's own axis order
        edits = [req.orientation.data_edit(e) for e in edits]
    ids = write_edits(layer, edits)
    session.invalidate_max()
    return ids
