"""First use: prompt and output layers for the chosen image, made when none fit."""

from __future__ import annotations

import napari
import numpy as np
from qtpy.QtCore import QTimer

from ..adapter.layers import geometry_matches, matching_layers, new_labels_layer, new_points_layer
from ..engine.errors import NapariSam2Error
from . import _notify

HINT = (
    "Click an object on the image (Shift-click: background), then press S to segment, "
    "C to commit, N for the next object."
)


def ensure_layers(dock) -> list:
    """Choose a Points and a Labels layer that line up with the dock's image.

    For each of the two pickers: keep its layer when it lines up with the image, else
    pick the newest viewer layer that does, else make a new one (the adapter's
    ``new_*_layer``).  Layers of another geometry are never chosen nor changed.  The
    prompt layer is selected in add mode.  Returns the layers made.
    """
    img = dock.image_combo.value()
    if img is None:
        return []
    made = []
    exclude = (dock.preview.layer,) if dock.preview.layer is not None else ()
    for combo, kind, make in (
        (dock.points_combo, napari.layers.Points, new_points_layer),
        (dock.labels_combo, napari.layers.Labels, new_labels_layer),
    ):
        current = combo.value()
        if current is not None and geometry_matches(current, img):
            continue
        fitting = matching_layers(dock.viewer, img, kind, exclude=exclude)
        if fitting:
            combo.set_value(fitting[-1])
            if kind is napari.layers.Labels:
                _warn_foreign_labels(fitting[-1])
            continue
        try:
            layer = make(dock.viewer, img)
        except NapariSam2Error as e:
            _notify.show_warning(str(e))
            return made
        made.append(layer)
        combo.set_value(layer)
    points = dock.points_combo.value()
    if made and points is not None:
        points.mode = "add"
        _select(dock.viewer, points)
        # an image being added is made active by napari after its "inserted" event (which
        # brought us here): select the prompt layer again once that is done
        QTimer.singleShot(0, lambda: _select(dock.viewer, points))
    return made


def _warn_foreign_labels(layer) -> None:
    """Say so when the output is a Labels layer that already holds objects not made with
    napari-sam2 (e.g. ground truth opened beside the image): commits go into it."""
    data = layer.data
    meta = layer.metadata if isinstance(layer.metadata, dict) else {}
    if not isinstance(data, np.ndarray) or "napari_sam2" in meta or not data.any():
        return
    n = len(np.unique(data[data != 0]))
    _notify.show_warning(
        f"Output labels: '{layer.name}' already holds {n} object(s) not made with SAM 2 "
        "segmentation; new objects will be added to it. To keep it unchanged (e.g. ground "
        "truth), press 'New' next to 'Labels out'."
    )


def _select(viewer, layer) -> None:
    if layer in viewer.layers:
        viewer.layers.selection.active = layer
