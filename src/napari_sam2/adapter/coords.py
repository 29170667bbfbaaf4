"""World ↔ data coordinates, with each layer's own transform.

A prompt drawn on any layer is taken to world coordinates with *that* layer's transform
(scale, translate, rotate, shear, affine) and back to the *image* layer's data
coordinates with the image's inverse transform.  Layers of fewer dimensions than the
world are aligned on the last (spatial) axes; their missing leading coordinates are the
viewer's current position.
"""

from __future__ import annotations

import numpy as np

from ..engine.errors import ImageError
from .layers import full_resolution


def image_ndim(image_layer) -> int:
    """Dimensions of the image layer, without the RGB axis."""
    return int(image_layer.ndim)


def layer_to_image_data(layer, coords, image_layer, world_point=None) -> np.ndarray:
    """Map (N, layer.ndim) data coords of ``layer`` to (N, image.ndim) image data coords."""
    coords = np.asarray(coords, dtype=float).reshape(-1, layer.ndim)
    nd_img = image_ndim(image_layer)
    out = np.empty((len(coords), nd_img))
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
        out[i] = image_layer.world_to_data(world)
    return out


def current_plane(image_layer, world_point, *, n_leading: int | None = None) -> tuple[int, ...]:
    """Index of the plane of ``image_layer`` shown at the viewer position ``world_point``.

    napari's own rule (``_ScalarFieldSliceRequest._point_to_slices`` in napari 0.9:
    ``int(np.round(p))`` of the layer's data point): rounded half to *even*, so a .5 tie
    (e.g. a Z scale of 2 next to a layer of scale 1) gives the plane napari shows.
    Clipped to the image.
    """
    data = np.asarray(image_layer.world_to_data(np.asarray(world_point, dtype=float)), float)
    shape = full_resolution(image_layer).shape[: image_ndim(image_layer)]
    n = image_ndim(image_layer) - 2 if n_leading is None else n_leading
    idx = napari_round(data[:n])
    return tuple(int(np.clip(i, 0, s - 1)) for i, s in zip(idx, shape[:n], strict=True))


def napari_round(values) -> np.ndarray:
    """Plane indices from data coordinates with napari's slicing rule (``np.round``: half
    to even).  Values within 1e-9 of a .5 tie are first snapped onto it, so that a float
    error of the transform cannot pick the other plane than napari at a tie."""
    v = np.asarray(values, dtype=float)
    halves = np.round(v * 2) / 2
    v = np.where(np.abs(v - halves) < 1e-9, halves, v)
    return np.round(v).astype(int)


def on_plane(coords: np.ndarray, plane: tuple[int, ...]) -> np.ndarray:
    """Which image-data coords lie on ``plane``: their leading coords round to its index
    with the rule napari uses for the viewed plane (:func:`napari_round`)."""
    coords = np.asarray(coords, dtype=float)
    if not plane:
        return np.ones(len(coords), bool)
    lead = coords[:, : len(plane)]
    return np.all(napari_round(lead) == np.asarray(plane, int), axis=1)
