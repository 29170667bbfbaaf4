"""A 2-D Labels layer showing the uncommitted result on the viewed plane."""

from __future__ import annotations

import numpy as np


class PreviewLayer:
    """Owns one preview Labels layer (created on demand, found by reference, not name)."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.layer = None

    def _geometry(self, image_layer) -> dict:
        nd = image_layer.ndim
        keep = [nd - 2, nd - 1]
        aff = np.asarray(image_layer.affine.affine_matrix)[np.ix_(keep + [nd], keep + [nd])]
        return {
            "scale": np.asarray(image_layer.scale)[keep],
            "translate": np.asarray(image_layer.translate)[keep],
            "rotate": np.asarray(image_layer.rotate)[np.ix_(keep, keep)],
            "affine": aff,
        }

    def show(self, image_layer, masks) -> None:
        active = self.viewer.layers.selection.active
        h, w = masks[0].shape
        data = np.zeros((h, w), np.int32)
        for i, m in enumerate(masks, start=1):
            data[m & (data == 0)] = i
        if (
            self.layer is None
            or self.layer not in self.viewer.layers
            or self.layer.data.shape != (h, w)
        ):
            if self.layer is not None and self.layer in self.viewer.layers:
                self.viewer.layers.remove(self.layer)
            self.layer = self.viewer.add_labels(
                data,
                name="SAM 2 preview",
                opacity=0.45,
                blending="translucent",
                **self._geometry(image_layer),
            )
            self.layer.editable = False
        else:
            self.layer.data = data
            for k, v in self._geometry(image_layer).items():
                setattr(self.layer, k, v)
        self.layer.visible = True
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # keep the user's layer (and keys)

    def clear(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.data = np.zeros_like(self.layer.data)

    @property
    def data(self):
        return None if self.layer is None else self.layer.data
