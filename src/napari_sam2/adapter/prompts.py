"""Points and Shapes layers → engine object prompts on the viewed plane."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from skimage.draw import polygon2mask

from ..engine.errors import PromptError
from ..engine.prompts import Box, MaskPrompt, ObjectPrompt, Points, make_objects
from .coords import layer_to_image_data, on_plane
from .layers import POSITIVE, channel_axis_of
from .orientation import Orientation

BOX_TYPES = ("rectangle",)
MASK_TYPES = ("polygon", "ellipse")
IGNORED_TYPES = ("line", "path", "polyline")
_ELLIPSE_SAMPLES = 72


@dataclass
class PromptSet:
    """Object prompts of one plane plus what was skipped and why."""

    objects: list[ObjectPrompt]
    notes: list[str] = field(default_factory=list)
    n_points: int = 0
    n_boxes: int = 0
    n_masks: int = 0

    def to_dicts(self) -> list[dict]:
        return [o.to_dict() for o in self.objects]


def _orientation(image_layer, orientation: Orientation | None) -> Orientation:
    if orientation is None:
        return Orientation.standard(image_layer.ndim, channel_axis_of(image_layer))
    return orientation


def _spatial(coords: np.ndarray, image_layer, orientation: Orientation | None = None):
    """Image data coords → oriented labels-space coords: the axes in the orientation's
    order (the displayed plane's (row, col) last), the channel axis (first) dropped."""
    o = _orientation(image_layer, orientation)
    coords = o.image_coords(coords)
    if channel_axis_of(image_layer) is not None:  # first of the oriented order
        coords = coords[:, 1:]
    return coords


def _to_image(layer, coords, image_layer, world_point, orientation):
    o = _orientation(image_layer, orientation)
    data = layer_to_image_data(layer, coords, image_layer, world_point, shown=o.screen_axes)
    return _spatial(data, image_layer, o)


def point_prompts(points_layer, image_layer, plane, world_point=None, orientation=None):
    """(coords_rc, labels) of the points lying on ``plane`` (an index over the
    ``orientation``'s non-displayed axes; default: the last two axes are displayed)."""
    if points_layer is None or len(points_layer.data) == 0:
        return np.empty((0, 2)), np.empty(0, int)
    data = _to_image(points_layer, points_layer.data, image_layer, world_point, orientation)
    feats = getattr(points_layer, "features", None)
    if feats is not None and POSITIVE in feats:
        labels = np.asarray(feats[POSITIVE], dtype=bool).astype(int)
    else:
        labels = np.ones(len(data), int)
    keep = on_plane(data, plane)
    return data[keep][:, -2:], labels[keep]


def _ellipse_outline(verts: np.ndarray) -> np.ndarray:
    """Outline of a napari ellipse given by its 4 bounding-box corners."""
    c = verts.mean(axis=0)
    a = (verts[1] - verts[0]) / 2
    b = (verts[3] - verts[0]) / 2
    t = np.linspace(0, 2 * np.pi, _ELLIPSE_SAMPLES, endpoint=False)[:, None]
    return c + np.cos(t) * a + np.sin(t) * b


def shape_prompts(
    shapes_layer, image_layer, plane, plane_shape, world_point=None, orientation=None
):
    """(boxes, masks, notes) from the shapes lying on ``plane`` (see :func:`point_prompts`)."""
    boxes, masks, notes = [], [], []
    if shapes_layer is None or len(shapes_layer.data) == 0:
        return boxes, masks, notes
    o = _orientation(image_layer, orientation)
    shown = list(o.displayed_of(shapes_layer.ndim))  # the axes the shapes are drawn in
    ignored = 0
    for verts, kind in zip(shapes_layer.data, shapes_layer.shape_type, strict=True):
        if kind in IGNORED_TYPES:
            ignored += 1
            continue
        if kind == "ellipse":
            outline = _ellipse_outline(verts[:, shown])
            verts = verts[:1].repeat(_ELLIPSE_SAMPLES, axis=0).astype(float)
            verts[:, shown] = outline
        data = _to_image(shapes_layer, verts, image_layer, world_point, o)
        if not on_plane(data, plane).all():
            continue
        rc = data[:, -2:]
        if kind in BOX_TYPES:
            boxes.append(Box.from_corners(rc))
        elif kind in MASK_TYPES:
            m = polygon2mask(plane_shape, rc)
            if m.any():
                masks.append(MaskPrompt(m))
            else:
                notes.append("A polygon/ellipse covers no pixel of the image and was ignored.")
    if ignored:
        notes.append(
            f"{ignored} line/path shape(s) ignored: draw rectangles (boxes) or polygons/ellipses (masks)."
        )
    return boxes, masks, notes


def collect_prompts(
    image_layer,
    plane: tuple[int, ...],
    plane_shape: tuple[int, int],
    *,
    points_layer=None,
    shapes_layer=None,
    world_point=None,
    refine_mask: np.ndarray | None = None,
    orientation: Orientation | None = None,
) -> PromptSet:
    """Build the object prompts of the viewed plane.

    Rectangles are boxes (one object each; points inside a box join it); polygons and
    ellipses are mask prompts; lines/paths are ignored with a note.  ``refine_mask``
    (an existing object's pixels) becomes the mask prompt of a single object that the
    points refine.  ``orientation``: which axes the viewer displays
    (:mod:`.orientation`); ``plane`` and the (row, col) prompts are in its oriented order.
    """
    o = orientation
    coords, labels = point_prompts(points_layer, image_layer, plane, world_point, o)
    boxes, masks, notes = shape_prompts(
        shapes_layer, image_layer, plane, plane_shape, world_point, o
    )
    if refine_mask is not None:
        if boxes or masks:
            notes.append("Refining one object: boxes and polygons on this plane were not used.")
        boxes, masks = [], [MaskPrompt(refine_mask)]
    if not len(coords) and not boxes and not masks:
        raise PromptError(
            "No prompt on this plane: add points (positive/negative) or draw a rectangle/polygon "
            "on the prompt layers at the plane you are viewing."
        )
    objects = make_objects(
        coords if len(coords) else None,
        labels if len(coords) else None,
        np.array([b.as_array() for b in boxes]) if boxes else None,
        np.stack([m.mask for m in masks]) if masks else None,
    )
    if refine_mask is not None and len(objects) > 1:  # points join the mask object
        objects = [
            ObjectPrompt(points=Points(coords, labels) if len(coords) else None, mask=masks[0])
        ]
    return PromptSet(objects, notes, len(coords), len(boxes), len(masks))


def same_objects(a, b) -> bool:
    """Are two lists of :class:`~napari_sam2.engine.prompts.ObjectPrompt` the same prompts?"""

    def arrays(o):
        return (
            None if o.points is None else o.points.coords,
            None if o.points is None else o.points.labels,
            None if o.box is None else o.box.as_array(),
            None if o.mask is None else o.mask.mask,
        )

    def same(x, y):
        return (x is None) == (y is None) and (x is None or np.array_equal(x, y))

    return len(a) == len(b) and all(
        p.label_id == q.label_id and all(map(same, arrays(p), arrays(q)))
        for p, q in zip(a, b, strict=True)
    )
