"""The dock's layer actions: the New Points/Shapes/Labels buttons and the check of the
chosen Labels layer (a mixin of :class:`napari_sam2.widget._dock.SAM2Widget`; it uses the
dock's ``viewer``, ``session``, combos, ``_warn`` and ``_set_status``)."""

from __future__ import annotations

from ..adapter.layers import (
    labels_matching,
    new_labels_layer,
    new_points_layer,
    new_shapes_layer,
)
from ..engine.errors import NapariSam2Error


class LayerActions:
    """New prompt/labels layers for the chosen image; the Labels layer check."""

    def _check_labels_choice(self):
        """Say at once when the chosen Labels layer cannot take this image's objects."""
        s = self.session
        if s.labels_layer is None or s.image_layer is None:
            return
        then = "commits would be refused. Pick another or press 'New'"
        if why := labels_matching(s.labels_layer, s.image_layer, then):
            self._set_status(why)

    def _need_image(self):
        img = self.image_combo.value()
        if img is None:
            self._warn("Open an image first: no Image layer in the viewer.")
        return img

    def _new_layer(self, make):
        if (img := self._need_image()) is None:
            return None
        try:
            return make(self.viewer, img)
        except NapariSam2Error as e:
            self._warn(str(e))
            return None

    def new_points(self):
        if (layer := self._new_layer(new_points_layer)) is not None:
            layer.mode = "add"
            self.points_combo.set_value(layer)

    def new_shapes(self):
        if (layer := self._new_layer(new_shapes_layer)) is not None:
            layer.mode = "add_rectangle"
            self.shapes_combo.set_value(layer)

    def new_labels(self):
        if (layer := self._new_layer(new_labels_layer)) is not None:
            self.labels_combo.set_value(layer)
            self.viewer.layers.selection.active = self.session.points_layer or layer
