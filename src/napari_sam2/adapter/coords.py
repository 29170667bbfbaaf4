"""World ↔ data coordinates, with each layer's own transform.

A prompt drawn on any layer is taken to world coordinates with *that* layer's transform
(scale, translate, rotate, shear, affine) and back to the *image* layer's data
coordinates with the image's inverse transform.  Layers of fewer dimensions than the
world are aligned on the last (spatial) axes; their missing leading coordinates are the
viewer's current position.

napari shows a layer whose transform couples the leading axes (Z, T) with the displayed
ones (an oblique NIfTI/DICOM affine, a light-sheet shear) *without* the out-of-plane part:
the plane is chosen from the leading world coordinates alone, and that plane's pixels are
drawn with the displayed axes' part of the transform (napari's "non-orthogonal slicing").
:func:`world_to_shown_data` follows that rule, so a prompt lands on the voxel napari shows
under the cursor and the plane is the one on screen; for every other layer it is
``layer.world_to_data``.
"""

from __future__ import annotations

import numpy as np

from ..engine.errors import ImageError
from .orientation import coupled, linear_part, napari_round
from .orientation import shown_data_mapper as _shown_mapper


def full_resolution(layer):
    """The layer's data at full resolution (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def image_ndim(image_layer) -> int:
    """Dimensions of the image layer, without the RGB axis."""
    return int(image_layer.ndim)


def layer_to_image_data(layer, coords, image_layer, world_point=None, shown=None) -> np.ndarray:
    """Map (N, layer.ndim) data coords of ``layer`` to (N, image.ndim) image data coords.

    ``shown``: the image axes the viewer displays (default: its last two), for the rule of
    :func:`world_to_shown_data`."""
    coords = np.asarray(coords, dtype=float).reshape(-1, layer.ndim)
    nd_img = image_ndim(image_layer)
    out = np.empty((len(coords), nd_img))
    to_data = shown_data_mapper(image_layer, shown=shown)
    for i, c in enumerate(coords):
        world = np.asarray(layer.data_to_world(c), dtype=float)
        if len(world) < nd_img:
            if world_point is None:
                raise ImageError(
                    f"A {layer.ndim}-D prompt layer cannot place prompts in a {nd_img}-D image "
                    "without the viewer's current position."
                )
            head = np.asarray(world_point, dtype=float)[-nd_img:][: nd_img - len(world)]
            world = np.concatenate([head, world])
        out[i] = to_data(world)
    return out


def slices_obliquely(layer) -> bool:
    """Does napari slice this layer non-orthogonally (see the module docstring)?"""
    n = int(layer.ndim)
    return n > 2 and coupled(linear_part(layer)[0], (n - 2, n - 1))


def world_to_shown_data(layer, world, n_lead: int | None = None, shown=None) -> np.ndarray:
    """Data coordinates of ``layer`` at a world position, as napari *shows* them.

    The leading ``n_lead`` coordinates (default: all but the last two; or all but the
    displayed axes ``shown``) are those of the plane napari slices at that world position
    (its ``_SliceInput.data_slice``: the world → data transform restricted to those axes);
    the displayed ones are the pixel drawn there (the data → world transform restricted to
    them, as napari's canvas uses it).  Equal to ``layer.world_to_data(world)`` unless the
    transform couples the two groups.
    """
    return shown_data_mapper(layer, n_lead, shown)(world)


def shown_data_mapper(layer, n_lead: int | None = None, shown=None):
    """:func:`world_to_shown_data` for one layer as a function of the world position
    (the transform is read once, for mapping many prompts)."""
    if shown is None:
        n = int(layer.ndim)
        n_lead = n - 2 if n_lead is None else int(n_lead)
        shown = tuple(range(n_lead, n))
    return _shown_mapper(layer, shown)


def current_plane(image_layer, world_point, *, n_leading: int | None = None) -> tuple[int, ...]:
    """Index of the plane of ``image_layer`` shown at the viewer position ``world_point``.

    napari's own rule (``_ScalarFieldSliceRequest._point_to_slices`` in napari 0.9:
    ``int(np.round(p))`` of the layer's data point): rounded half to *even*, so a .5 tie
    (e.g. a Z scale of 2 next to a layer of scale 1) gives the plane napari shows; the
    data point of a non-orthogonal layer is napari's (:func:`world_to_shown_data`).
    Clipped to the image.
    """
    n = image_ndim(image_layer) - 2 if n_leading is None else n_leading
    point = np.asarray(world_point, dtype=float)[-image_ndim(image_layer) :]
    data = world_to_shown_data(image_layer, point, n)
    shape = full_resolution(image_layer).shape[: image_ndim(image_layer)]
    idx = napari_round(data[:n])
    return tuple(int(np.clip(i, 0, s - 1)) for i, s in zip(idx, shape[:n], strict=True))


def on_plane(coords: np.ndarray, plane: tuple[int, ...]) -> np.ndarray:
    """Which image-data coords lie on ``plane``: their leading coords round to its index
    with the rule napari uses for the viewed plane (:func:`napari_round`)."""
    coords = np.asarray(coords, dtype=float)
    if not plane:
        return np.ones(len(coords), bool)
    lead = coords[:, : len(plane)]
    return np.all(napari_round(lead) == np.asarray(plane, int), axis=1)
