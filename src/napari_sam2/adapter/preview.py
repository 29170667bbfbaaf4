"""A 2-D Labels layer showing the uncommitted result on the viewed plane."""

from __future__ import annotations

import numpy as np

from .layers import layer_geometry, plane_geometry
from .orientation import Orientation, linear_part

_KEYS = ("scale", "translate", "rotate", "shear", "affine", "units")


class PreviewLayer:
    """Owns one preview Labels layer (created on demand, found by reference, not name).

    uint8 data (uint16 beyond 255 objects) so napari draws it without re-colouring on the
    CPU; :meth:`clear` hides the layer instead of uploading an empty plane.
    """

    def __init__(self, viewer):
        self.viewer = viewer
        self.layer = None
        self._plane = None  # the shown masks as a (rows, cols) plane

    def show(self, image_layer, masks, placement=None, orientation=None, plane=()) -> None:
        """Show ``masks`` over the viewed plane; ``placement`` (an
        :class:`~napari_sam2.adapter.tiles.Placement`): the masks are tile-local, at a
        resolution level, and the layer is placed (scale, translate) over that tile only.

        ``orientation``/``plane``: the displayed axes (:mod:`.orientation`) and the
        oriented plane index.  napari lines a 2-D layer up with the *last* two world axes,
        so on any other displayed plane the preview is a layer of the labels' dimensions,
        one pixel thick across the plane, placed on it."""
        active = self.viewer.layers.selection.active
        h, w = masks[0].shape
        data = np.zeros((h, w), np.uint8 if len(masks) < 256 else np.uint16)
        for i, m in enumerate(masks, start=1):
            data[m & (data == 0)] = i
        self._plane = data
        if orientation is not None and not orientation.identity:
            data, geo = _across(image_layer, data, orientation, plane, placement)
        else:
            geo = {k: v for k, v in plane_geometry(image_layer).items() if k in _KEYS}
            if placement is not None:
                geo.update(_placed(geo, placement))
        if (
            self.layer is None
            or self.layer not in self.viewer.layers
            or self.layer.data.shape != data.shape
            or self.layer.data.dtype != data.dtype
        ):
            if self.layer is not None and self.layer in self.viewer.layers:
                self.viewer.layers.remove(self.layer)
            self.layer = self.viewer.add_labels(
                data, name="SAM 2 preview", opacity=0.45, blending="translucent", **geo
            )
            self.layer.editable = False
        else:
            for k in _KEYS:  # scale before translate: napari keeps them apart
                if k in geo:
                    setattr(self.layer, k, geo[k])
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
        return self._plane


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


def _across(image_layer, plane_data, orientation: Orientation, plane, placement=None):
    """The preview on a plane across the stack: the masks as a labels-dimensional array
    one pixel thick along the non-displayed axes, and the transform placing its pixel
    ``p`` where the labels show pixel ``offset + p`` (tiles: scaled by their factor)."""
    geo = layer_geometry(image_layer)
    nd = len(geo["scale"])
    rows, cols = orientation.plane_axes
    offset = np.zeros(nd)
    factor = np.ones(nd)
    for a, i in zip(orientation.leading, plane, strict=True):
        offset[a] = float(i)
    if placement is not None:
        f = np.asarray(placement.factor, float)
        origin = np.asarray(placement.offset, float) * f + (f - 1) / 2
        offset[[rows, cols]] = origin
        factor[[rows, cols]] = f
    shape = [1] * (nd - 2) + list(plane_data.shape)
    data = np.transpose(plane_data.reshape(shape), orientation.inverse)
    # world = A (M x + t) with M = rotate·shear·scale: a data shift d moves t by M d
    from napari.layers import Labels

    probe = Labels(np.zeros((1,) * nd, np.uint8), **geo)  # its transform only
    affine = np.asarray(geo["affine"], float)[:nd, :nd]
    m = np.linalg.solve(affine, linear_part(probe)[0])
    out = {k: geo[k] for k in ("rotate", "shear", "affine") if k in geo}
    units = tuple(getattr(image_layer, "units", None) or ())  # napari warns of a mix
    ch = orientation.channel_axis
    if ch is not None and len(units) == nd + 1:  # the labels have no channel axis
        units = units[:ch] + units[ch + 1 :]
    if len(units) == nd:
        out["units"] = units
    out["scale"] = np.asarray(geo["scale"], float) * factor
    out["translate"] = np.asarray(geo["translate"], float) + m @ offset
    return np.ascontiguousarray(data), out
