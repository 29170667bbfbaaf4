"""Which plane of a layer the viewer shows: any two axes, not only the last two (Y, X).

napari displays the last two axes of ``viewer.dims.order``; the user rolls them
(Ctrl-E) or sets the order to look at a coronal or sagittal CT plane, or at an XZ view of
an anisotropic light-sheet stack.  An :class:`Orientation` says which axes of the image
layer are displayed and gives the adapter an *oriented* view of the arrays: their
non-displayed axes first (in data order, the channel axis first of them), then the two
displayed ones.  The engine only ever segments the last two axes of the array it is
given, so with oriented views of the image and of the labels every engine call (encode,
predict, plan the writes, propagate) works unchanged on any displayed plane, and
propagation runs along the axes that are not displayed.

The displayed pair is kept in *data* order (the lower axis gives the rows) whichever way
round the screen shows it: the same physical plane is the same engine plane, so its
embedding is cached (and precomputed) once, and today's (Y, X) planes stay exactly as
they were.  The prompts and the masks map exactly either way.

Writes and undo: an edit planned on the oriented labels carries oriented indices;
:meth:`Orientation.data_index` puts them back in the labels array's axis order, the form
napari's undo history holds.

World ↔ data: napari shows a layer whose transform couples the displayed axes with the
others (an oblique NIfTI affine) without the out-of-plane part: the plane comes from the
non-displayed world coordinates alone and its pixels are drawn with the displayed axes'
part of the transform (``_SliceInput.data_slice``).  :func:`shown_data_mapper` follows
that rule for any displayed pair, so a click lands on the voxel napari shows under it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..engine.errors import ImageError


def layer_order(world_order, ndim: int) -> tuple[int, ...]:
    """napari's order of a ``ndim``-D layer's axes for a world ``dims.order`` (the layer
    lines up with the last world axes; ``Layer._world_to_layer_dims``)."""
    order = np.asarray(tuple(world_order), int)
    offset = len(order) - int(ndim)
    if offset < 0:
        order = np.concatenate((np.arange(-offset), order - offset))
    elif offset > 0:
        order = order[order >= offset] - offset
    return tuple(int(a) for a in order)


@dataclass(frozen=True)
class Orientation:
    """The displayed plane of an image layer.

    ``world_order``: ``viewer.dims.order`` (its last two world axes are displayed, as
    screen rows then columns); ``image_ndim``: the image layer's dimensions (no RGB axis);
    ``channel_axis``: the image's channel axis (None or 0), which is never displayed.
    """

    world_order: tuple[int, ...]
    image_ndim: int
    channel_axis: int | None = None

    @classmethod
    def standard(cls, image_ndim: int, channel_axis: int | None = None) -> Orientation:
        """The last two axes displayed (what a fresh viewer shows)."""
        return cls(tuple(range(int(image_ndim))), int(image_ndim), channel_axis)

    # -------------------------------------------------------------- axes
    def displayed_of(self, ndim: int) -> tuple[int, int]:
        """The axes of a ``ndim``-D layer napari displays, as (screen rows, columns)."""
        rows, cols = layer_order(self.world_order, ndim)[-2:]
        return rows, cols

    @property
    def screen_axes(self) -> tuple[int, int]:
        """The image layer's displayed axes as (screen rows, screen columns)."""
        return self.displayed_of(self.image_ndim)

    @property
    def image_axes(self) -> tuple[int, ...]:
        """The oriented order of the image layer's axes: the others, then the plane's."""
        shown = tuple(sorted(self.screen_axes))
        rest = tuple(a for a in range(self.image_ndim) if a not in shown)
        return rest + shown

    @property
    def axes(self) -> tuple[int, ...]:
        """The oriented order of the labels (spatial) array's axes: channel axis dropped."""
        ch = self.channel_axis
        return tuple(a - (ch is not None and a > ch) for a in self.image_axes if a != ch)

    @property
    def inverse(self) -> tuple[int, ...]:
        """``inverse[a]``: where labels axis ``a`` is in the oriented order."""
        return tuple(int(i) for i in np.argsort(self.axes))

    @property
    def identity(self) -> bool:
        """Are the labels' last two axes displayed (no re-ordering needed)?"""
        return self.axes == tuple(range(len(self.axes)))

    @property
    def leading(self) -> tuple[int, ...]:
        """The labels axes a plane index runs over (not displayed), in oriented order."""
        return self.axes[:-2]

    @property
    def plane_axes(self) -> tuple[int, int]:
        """The labels axes giving the oriented plane's (rows, cols)."""
        rows, cols = self.axes[-2:]
        return rows, cols

    def key(self) -> tuple:
        """What makes two orientations different planes for the engine (cache keys)."""
        return ("axes", *self.axes)

    def check(self, name: str = "the image") -> Orientation:
        """Raise :class:`ImageError` when the displayed plane cannot be segmented."""
        ndim = len(self.world_order)
        offset = ndim - self.image_ndim
        shown = self.world_order[-2:]
        if offset > 0 and min(shown) < offset:
            raise ImageError(
                f"The viewer displays an axis that {name} does not have: show two of its "
                "axes (dims order, or Ctrl-E to roll them)."
            )
        if self.channel_axis is not None and self.channel_axis in self.screen_axes:
            raise ImageError(
                f"The viewer displays the channel axis of {name}: show two spatial axes "
                "(dims order, or Ctrl-E to roll them)."
            )
        return self

    # ----------------------------------------------------------- arrays
    def shape(self, shape) -> tuple[int, ...]:
        """A labels-space shape in oriented order."""
        return tuple(int(shape[a]) for a in self.axes)

    def plane_shape(self, shape) -> tuple[int, int]:
        """(rows, cols) of the oriented plane for a labels-space ``shape``."""
        rows, cols = self.plane_axes
        return int(shape[rows]), int(shape[cols])

    def view(self, array):
        """The labels-space ``array`` with its axes in oriented order (a view: writes go
        to ``array``)."""
        return _transposed(array, self.axes)

    def image_view(self, data, rgb: bool = False):
        """The image layer's data (or one resolution level) in oriented order; the RGB
        axis, if any, stays last and a channel axis stays first."""
        perm = self.image_axes + ((int(data.ndim) - 1,) if rgb else ())
        return _transposed(data, perm)

    def data_index(self, index) -> tuple:
        """An index over the oriented labels (ints, slices or arrays, one per axis) put
        back into the labels array's axis order (e.g. an undo-history atom)."""
        index = tuple(index)
        if len(index) != len(self.axes):
            raise ValueError(f"index over {len(index)} axes, the labels have {len(self.axes)}")
        return tuple(index[i] for i in self.inverse)

    def data_edit(self, edit):
        """A :class:`~napari_sam2.engine.labels.LabelEdit` planned on the oriented labels,
        with its indices in the labels array's axis order."""
        if self.identity:
            return edit
        return dataclasses.replace(edit, indices=self.data_index(edit.indices))

    def oriented_index(self, index) -> tuple:
        """An index in the labels array's axis order put in oriented order."""
        index = tuple(index)
        return tuple(index[a] for a in self.axes)

    def image_coords(self, coords) -> np.ndarray:
        """(N, image_ndim) image data coordinates with their columns in oriented order."""
        return np.asarray(coords, float).reshape(-1, self.image_ndim)[:, list(self.image_axes)]

    def describe(self) -> dict:
        """For provenance: the labels axes of the plane (rows, cols) and of its index."""
        return {"plane_axes": list(self.plane_axes), "index_axes": list(self.leading)}


def orientation_of(viewer, image_layer, channel_axis: int | None = None) -> Orientation:
    """The :class:`Orientation` of ``image_layer`` (its ``channel_axis``, if any) in
    ``viewer`` (checked)."""
    order = tuple(int(a) for a in viewer.dims.order)
    o = Orientation(order, int(image_layer.ndim), channel_axis)
    return o.check(f"'{image_layer.name}'")


def oriented_source(source, orientation: Orientation):
    """An :class:`~napari_sam2.adapter.channels.ImageSource` whose data is in the
    orientation's order (its signature, and so the segmenter's image, differs per
    orientation); the source itself for the standard orientation.

    A source stacking channel *layers* has one more leading axis than the layer (its
    channel axis 0), which stays first."""
    if orientation.identity:
        return source
    data = source.data
    rgb = bool(source.kwargs.get("rgb"))
    perm = orientation.image_axes
    if int(data.ndim) - rgb == orientation.image_ndim + 1:  # stacked channel layers
        perm = (0, *(a + 1 for a in perm))
    perm = perm + ((int(data.ndim) - 1,) if rgb else ())
    return dataclasses.replace(source, data=_transposed(data, perm), orientation=orientation.key())


# ------------------------------------------------------------------ world ↔ data
def linear_part(layer) -> tuple[np.ndarray, np.ndarray]:
    """``(L, t)`` of the layer's data → world transform (``world = L @ data + t``)."""
    n = int(layer.ndim)
    t = np.asarray(layer.data_to_world(np.zeros(n)), dtype=float)
    cols = [np.asarray(layer.data_to_world(np.eye(n)[i]), dtype=float) - t for i in range(n)]
    return np.stack(cols, axis=1), t


def coupled(linear: np.ndarray, shown) -> bool:
    """Does the transform mix the displayed axes ``shown`` with the others?"""
    n = len(linear)
    shown = sorted(int(a) for a in shown)
    rest = [a for a in range(n) if a not in shown]
    if not rest:
        return False
    tol = 1e-9 * max(1.0, float(np.abs(linear).max()))
    return bool(
        np.abs(linear[np.ix_(rest, shown)]).max() > tol
        or np.abs(linear[np.ix_(shown, rest)]).max() > tol
    )


def shown_data_mapper(layer, shown=None):
    """World position → the data coordinates of ``layer`` napari *shows* there, with the
    axes ``shown`` (default: the last two) displayed.

    The non-displayed coordinates are those of the plane napari slices (the world → data
    transform restricted to those axes); the displayed ones are the pixel drawn at that
    position (the data → world transform restricted to the displayed axes).  Equal to
    ``layer.world_to_data`` unless the transform couples the two groups.
    """
    n = int(layer.ndim)
    shown = (n - 2, n - 1) if shown is None else tuple(sorted(int(a) for a in shown))
    if n <= 2:
        return lambda world: np.asarray(layer.world_to_data(np.asarray(world, float)), float)
    linear, t = linear_part(layer)
    if not coupled(linear, shown):
        return lambda world: np.asarray(layer.world_to_data(np.asarray(world, float)), float)
    rest = [a for a in range(n) if a not in shown]
    inv = np.linalg.inv(linear)
    inv_t = -inv @ t
    sub_inv = inv[np.ix_(rest, rest)]
    sub_lin = linear[np.ix_(list(shown), list(shown))]

    def to_data(world):
        world = np.asarray(world, dtype=float)[-n:]
        out = np.empty(n)
        out[rest] = sub_inv @ world[rest] + inv_t[rest]
        out[list(shown)] = np.linalg.solve(sub_lin, world[list(shown)] - t[list(shown)])
        return out

    return to_data


def napari_round(values) -> np.ndarray:
    """napari's plane rule (``np.round``: half to even), with float noise at .5 snapped."""
    v = np.asarray(values, dtype=float)
    halves = np.round(v * 2) / 2
    v = np.where(np.abs(v - halves) < 1e-9, halves, v)
    return np.round(v).astype(int)


def viewed_index(image_layer, world_point, orientation: Orientation, shape=None) -> tuple:
    """The image layer's index of the displayed plane over its non-displayed axes, in
    oriented order (channel axis first), as napari slices it; clipped to ``shape`` (the
    layer's full-resolution shape, default read from the layer)."""
    n = int(image_layer.ndim)
    point = np.asarray(world_point, dtype=float)[-n:]
    data = shown_data_mapper(image_layer, orientation.screen_axes)(point)
    if shape is None:
        d = image_layer.data[0] if getattr(image_layer, "multiscale", False) else image_layer.data
        shape = d.shape
    lead = orientation.image_axes[:-2]
    idx = napari_round(data[list(lead)]) if lead else np.empty(0, int)
    return tuple(int(np.clip(i, 0, int(shape[a]) - 1)) for i, a in zip(idx, lead, strict=True))


# ------------------------------------------------------------------ array views
def _transposed(array, perm):
    perm = tuple(int(a) for a in perm)
    if perm == tuple(range(len(perm))):
        return array
    if isinstance(array, np.ndarray) or _is_dask(array):
        return array.transpose(perm)
    return TransposedArray(array, perm)


def _is_dask(array) -> bool:
    return type(array).__module__.startswith("dask.")


class TransposedArray:
    """A lazy transposed view of an array that has no ``transpose`` view of its own
    (zarr, h5py, tifffile stores): reading or writing an oriented region reads or writes
    only that region of the underlying array.  Basic indexing (ints, slices) and a full
    tuple of index arrays are supported."""

    def __init__(self, array, perm):
        self.base = array
        self.perm = tuple(perm)
        self.inverse = tuple(int(i) for i in np.argsort(self.perm))
        self.shape = tuple(int(array.shape[a]) for a in self.perm)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def _key(self, key) -> tuple[tuple, list[int] | None]:
        """The base array's key, and the base axes the basic result keeps (None: advanced
        indexing, whose result shape is the index arrays' shape)."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        base = tuple(key[self.inverse[a]] for a in range(self.ndim))
        arrays = [not isinstance(k, (slice, int, np.integer)) for k in key]
        if all(arrays):
            return base, None
        if any(arrays):
            raise IndexError("TransposedArray: mixed basic and advanced indexing")
        kept = [a for a in self.perm if isinstance(base[a], slice)]  # oriented order
        return base, kept

    def __getitem__(self, key):
        base_key, kept = self._key(key)
        out = np.asarray(self.base[base_key])
        if kept is None:
            return out
        have = sorted(kept)  # the base result keeps its axes in base order
        return out.transpose([have.index(a) for a in kept])

    def __setitem__(self, key, value):
        base_key, kept = self._key(key)
        value = np.asarray(value)
        if kept is not None and value.ndim == len(kept):
            have = sorted(kept)
            value = value.transpose([kept.index(a) for a in have])
        self.base[base_key] = value

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.base[(slice(None),) * self.ndim]).transpose(self.perm)
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]
