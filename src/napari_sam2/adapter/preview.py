"""A 2-D Labels layer showing the uncommitted result on the viewed plane."""

from __future__ import annotations

import numpy as np

from .layers import plane_geometry

_KEYS = ("scale", "translate", "rotate", "affine", "units")


class PreviewLayer:
    """Owns one preview Labels layer (created on demand, found by reference, not name).

    uint8 data (uint16 beyond 255 objects) so napari draws it without re-colouring on the
    CPU; :meth:`clear` hides the layer instead of uploading an empty plane.
    """

    def __init__(self, viewer):
        self.viewer = viewer
        self.layer = None

    def show(self, image_layer, masks, placement=None) -> None:
        """Show ``masks`` over the viewed plane; ``placement`` (an
        :class:`~napari_sam2.adapter.tiles.Placement`): the masks are tile-local, at a
        resolution level, and the layer is placed (scale, translate) over that tile only."""
        active = self.viewer.layers.selection.active
        h, w = masks[0].shape
        data = np.zeros((h, w), np.uint8 if len(masks) < 256 else np.uint16)
        for i, m in enumerate(masks, start=1):
            data[m & (data == 0)] = i
        geo = {k: v for k, v in plane_geometry(image_layer).items() if k in _KEYS}
        if placement is not None:
            geo.update(_placed(geo, placement))
        if (
            self.layer is None
            or self.layer not in self.viewer.layers
            or self.layer.data.shape != (h, w)
            or self.layer.data.dtype != data.dtype
        ):
            if self.layer is not None and self.layer in self.viewer.layers:
                self.viewer.layers.remove(self.layer)
            self.layer = self.viewer.add_labels(
                data, name="SAM 2 preview", opacity=0.45, blending="translucent", **geo
            )
            self.layer.editable = False
        else:
            for k, v in geo.items():
                setattr(self.layer, k, v)
            self.layer.data = data
        self.layer.visible = True
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # keep the user's layer (and keys)

    def clear(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.visible = False

    def remove(self) -> None:
        """Take the preview layer out of the viewer (the widget is closed)."""
        layer, self.layer = self.layer, None
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    @property
    def data(self):
        """The shown preview, or None when there is none (cleared or never shown)."""
        if self.layer is None or not self.layer.visible:
            return None
        return self.layer.data


def _placed(geo: dict, placement) -> dict:
    """Scale and translate putting tile pixel ``p`` where the image shows full-resolution
    pixel ``(offset + p) f + (f - 1) / 2`` (the centre of the block it covers)."""
    scale = np.asarray(geo["scale"], float)
    f = np.asarray(placement.factor, float)
    origin = np.asarray(placement.offset, float) * f + (f - 1) / 2
    rotate = np.asarray(geo["rotate"], float)
    return {
        "scale": scale * f,
        "translate": np.asarray(geo["translate"], float) + rotate @ (scale * origin),
    }
