"""The output layers follow the image when its scale, translate, rotation or affine change.

Found as a new user: a time-lapse opened without pixel size, docked, then given its real
scale (layer properties or the console).  The widget's labels layer kept scale 1, so the
next commit was written correctly in the image's pixels but drawn far away, on another
time point: "Wrote label 1" and nothing on screen.

A Labels layer that lined up with the image just before the change takes the new
transform (its pixels are image pixels, so that puts them back on the image).  A prompt
layer follows only while it is empty: its clicks are world positions the user placed.
This panel has no controls; it is hidden.
"""

from __future__ import annotations

import contextlib

from qtpy.QtWidgets import QWidget

from ..adapter.layers import TRANSFORM_KEYS as _EVENTS  # one event per part
from ..adapter.layers import layer_geometry, realign, same_transform


class FollowImagePanel(QWidget):
    """Keeps the dock's labels (and empty prompt) layers on the image's transform."""

    SECTION = False  # no controls: kept hidden, without a section

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.setVisible(False)
        self._image = None
        self._geo = None
        dock.image_combo.currentIndexChanged.connect(self._rebind)
        self._rebind()

    def _rebind(self, *args) -> None:
        img = self.dock.image_combo.value()
        if img is self._image:
            return
        self._unbind()
        self._image = img
        self._geo = None if img is None else layer_geometry(img)
        if img is not None:
            for name in _EVENTS:
                getattr(img.events, name).connect(self._changed)

    def _unbind(self) -> None:
        img, self._image = self._image, None
        if img is None:
            return
        for name in _EVENTS:
            with contextlib.suppress(TypeError, RuntimeError, ValueError):
                getattr(img.events, name).disconnect(self._changed)

    def _changed(self, event=None) -> None:
        img = self._image
        old, new = self._geo, None if img is None else layer_geometry(img)
        self._geo = new
        if old is None or new is None:
            return
        s = self.dock.session
        moved = []
        for layer in (s.labels_layer, s.points_layer, s.shapes_layer):
            if layer is None or not same_transform(layer, old) or same_transform(layer, new):
                continue
            if layer is not s.labels_layer and len(layer.data):
                continue  # prompts placed by the user stay where they are in the world
            realign(layer, new)
            moved.append(layer.name)
        if moved:
            names = ", ".join(f"'{n}'" for n in moved)
            self.dock.set_status(f"{names} follow the new geometry of image '{img.name}'.")

    def close_panel(self) -> None:
        self._unbind()
        with contextlib.suppress(TypeError, RuntimeError):
            self.dock.image_combo.currentIndexChanged.disconnect(self._rebind)
