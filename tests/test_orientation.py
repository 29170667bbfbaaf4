"""Unit tests of adapter.orientation: any displayed pair of axes (no viewer, no Qt)."""

import warnings

import numpy as np
import pytest
from napari.layers import Image
from napari.layers.base.base import _LayerSlicingState
from napari.layers.utils._slice_input import _SliceInput, _ThickNDSlice

from napari_sam2.adapter.orientation import (
    Orientation,
    TransposedArray,
    layer_order,
    shown_data_mapper,
    viewed_index,
)
from napari_sam2.engine.errors import ImageError


class Store:
    """An array with indexing only (like a zarr array): no ``transpose`` view."""

    def __init__(self, a):
        self.a = a
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim

    def __getitem__(self, key):
        return self.a[key].copy()

    def __setitem__(self, key, value):
        self.a[key] = value


@pytest.mark.parametrize(
    "order, ndim",
    [((0, 1, 2), 3), ((1, 0, 2), 3), ((2, 0, 1), 3), ((3, 1, 0, 2), 3), ((0, 2, 1, 3), 2)],
)
def test_layer_order_is_napari_rule(order, ndim):
    want = _LayerSlicingState._world_to_layer_dims_impl(order, len(order), ndim)
    assert layer_order(order, ndim) == tuple(int(a) for a in want)


@pytest.mark.parametrize(
    "order, screen, axes",
    [
        ((0, 1, 2), (1, 2), (0, 1, 2)),  # axial (Y, X)
        ((0, 2, 1), (2, 1), (0, 1, 2)),  # transposed (X, Y): same engine plane
        ((1, 0, 2), (0, 2), (1, 0, 2)),  # (Z, X): coronal / XZ
        ((2, 0, 1), (0, 1), (2, 0, 1)),  # (Z, Y): sagittal / YZ (Ctrl-E once)
        ((1, 2, 0), (2, 0), (1, 0, 2)),  # (X, Z) on screen: the same plane as (Z, X)
    ],
)
def test_orientations_of_a_volume(order, screen, axes):
    o = Orientation(order, 3)
    assert o.screen_axes == screen
    assert o.axes == axes
    assert o.leading == axes[:1] and o.plane_axes == axes[1:]
    assert o.identity == (axes == (0, 1, 2))
    assert o.key() != Orientation((0, 1, 2), 3).key() or o.identity


def test_oriented_view_reads_and_writes_the_displayed_plane():
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    o = Orientation((1, 0, 2), 3)  # shows (Z, X) planes, index over Y
    view = o.view(data)
    assert view.shape == (5, 4, 6) and o.shape(data.shape) == (5, 4, 6)
    assert o.plane_shape(data.shape) == (4, 6)
    np.testing.assert_array_equal(view[3], data[:, 3, :])
    view[3][1, 2] = -1  # a view: writes reach the data, on the plane y=3 only
    assert data[1, 3, 2] == -1 and (data == -1).sum() == 1


def test_data_index_maps_an_edit_back_for_the_undo_history():
    labels = np.zeros((4, 5, 6), np.uint16)
    o = Orientation((2, 0, 1), 3)  # (Z, Y) planes, index over X
    rr, cc = np.array([0, 3]), np.array([1, 4])
    oriented = (np.full(2, 5), rr, cc)  # plane x=5, rows Z, cols Y
    idx = o.data_index(oriented)
    labels[idx] = 7
    assert sorted(zip(*np.nonzero(labels), strict=True)) == [(0, 1, 5), (3, 4, 5)]
    assert o.oriented_index(idx)[0].tolist() == [5, 5]
    np.testing.assert_array_equal(o.view(labels)[5][rr, cc], [7, 7])


def test_channel_axis_stays_first_and_is_never_displayed():
    o = Orientation((0, 2, 1, 3), 4, channel_axis=0)  # C, Z, Y, X showing (Z, X)
    assert o.screen_axes == (1, 3)
    assert o.image_axes == (0, 2, 1, 3)
    assert o.axes == (1, 0, 2)  # labels (Z, Y, X): index over Y
    img = np.zeros((2, 4, 5, 6))
    assert o.image_view(img).shape == (2, 5, 4, 6)
    with pytest.raises(ImageError, match="channel axis"):
        Orientation((1, 2, 3, 0), 4, channel_axis=0).check()


def test_rgb_axis_stays_last():
    o = Orientation((1, 0, 2), 3)
    rgb = np.zeros((4, 5, 6, 3))
    assert o.image_view(rgb, rgb=True).shape == (5, 4, 6, 3)


def test_an_axis_the_image_lacks_cannot_be_displayed():
    with pytest.raises(ImageError, match="does not have"):
        Orientation((1, 2, 3, 0), 3).check()  # world T shown next to X: not in the image
    assert Orientation((0, 2, 1, 3), 3).check().axes == (1, 0, 2)


@pytest.mark.parametrize("perm", [(1, 0, 2), (2, 0, 1), (0, 2, 1)])
def test_transposed_array_matches_numpy(perm):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 100, (4, 5, 6))
    t = TransposedArray(Store(a), perm)
    ref = a.transpose(perm)
    assert t.shape == ref.shape and t.ndim == 3
    for key in [(1,), (slice(1, 3), 2), (2, slice(None), slice(1, 4)), (Ellipsis, 1)]:
        np.testing.assert_array_equal(t[key], ref[key])
    fancy = (np.array([0, 1]), np.array([1, 2]), np.array([3, 0]))
    np.testing.assert_array_equal(t[fancy], ref[fancy])
    np.testing.assert_array_equal(np.asarray(t), ref)
    region = np.arange(ref[1, 1:3].size).reshape(ref[1, 1:3].shape) + 1000
    t[1, 1:3] = region
    np.testing.assert_array_equal(a.transpose(perm)[1, 1:3], region)
    t[fancy] = -5
    assert (a.transpose(perm)[fancy] == -5).all()


def test_standard_view_is_the_array_itself():
    data = np.zeros((3, 4, 5))
    o = Orientation.standard(3)
    assert o.identity and o.view(data) is data and o.image_view(data) is data


def _napari_plane(layer, world, order):
    """napari's own data index of the non-displayed axes (``_SliceInput.data_slice``)."""
    si = _SliceInput(ndisplay=2, world_slice=_ThickNDSlice.make_full(point=world), order=order)
    with warnings.catch_warnings():  # napari warns that it drops the out-of-plane part
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(si.data_slice(layer._data_to_world.inverse).point)


def _oblique_layer():
    """A NIfTI-like layer: 3 mm slices, 0.8 mm pixels, tilted 10° about the X axis."""
    th = np.deg2rad(10)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([3.0, 0.8, 0.8])
    aff[:3, 3] = [5.0, -7.0, 2.0]
    return Image(np.zeros((10, 40, 30)), affine=aff)


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 0, 1)])
def test_shown_mapper_follows_napari_slicing_on_an_oblique_layer(order):
    layer = _oblique_layer()
    o = Orientation(order, 3)
    to_data = shown_data_mapper(layer, o.screen_axes)
    rng = np.random.default_rng(1)
    for _ in range(5):
        world = layer.data_to_world(rng.uniform(0, 9, 3))
        data = to_data(world)
        rest = [a for a in range(3) if a not in o.screen_axes]
        np.testing.assert_allclose(data[rest], _napari_plane(layer, world, order)[rest])
        # the displayed coords: the pixel napari draws there, with the displayed part of
        # the data -> world transform (world = L @ data + t)
        shown = list(o.screen_axes)
        t = np.asarray(layer.data_to_world(np.zeros(3)))
        lin = np.stack([np.asarray(layer.data_to_world(e)) - t for e in np.eye(3)], axis=1)
        np.testing.assert_allclose(
            lin[np.ix_(shown, shown)] @ data[shown] + t[shown], np.asarray(world)[shown]
        )


def test_shown_mapper_is_world_to_data_when_orthogonal():
    layer = Image(np.zeros((10, 40, 30)), scale=(4, 1, 1), translate=(2, 0, 0))
    for shown in [(1, 2), (0, 2), (0, 1)]:
        world = np.array([13.0, 7.2, 5.6])
        np.testing.assert_allclose(
            shown_data_mapper(layer, shown)(world), layer.world_to_data(world)
        )


def test_viewed_index_rounds_like_napari_and_clips():
    layer = Image(np.zeros((10, 40, 30)), scale=(4, 1, 1))
    xz = Orientation((1, 0, 2), 3)  # index over Y
    assert viewed_index(layer, [8.0, 12.5, 3.0], xz) == (12,)  # half to even
    assert viewed_index(layer, [8.0, 13.5, 3.0], xz) == (14,)
    assert viewed_index(layer, [8.0, 99.0, 3.0], xz) == (39,)  # clipped
    yz = Orientation((2, 0, 1), 3)  # index over X
    assert viewed_index(layer, [8.0, 12.5, 3.2], yz) == (3,)
    assert viewed_index(layer, [8.0, 12.5, 3.2], Orientation.standard(3)) == (2,)


def test_viewed_index_of_a_channel_image_puts_the_channel_first():
    layer = Image(np.zeros((2, 10, 40, 30)))
    o = Orientation((0, 2, 1, 3), 4, channel_axis=0)  # C, Y index; (Z, X) shown
    assert viewed_index(layer, [1.0, 4.0, 17.0, 3.0], o) == (1, 17)


def test_propagation_axes_are_the_ones_not_displayed():
    from napari_sam2.adapter.propagate import plane_axes, propose_axis

    layer = Image(np.zeros((3, 10, 40, 30)), axis_labels=("t", "z", "y", "x"))
    assert plane_axes(layer) == [(0, "t"), (1, "z")]
    assert propose_axis(layer) is None  # Z or T: the user chooses
    xz = Orientation((0, 2, 1, 3), 4)  # T, Y not displayed; (Z, X) shown
    assert plane_axes(layer, xz) == [(0, "t"), (1, "y")]
    assert propose_axis(layer, xz) == 1  # across the view: through Y, not time
    vol = Image(np.zeros((10, 40, 30)), axis_labels=("z", "y", "x"))
    assert plane_axes(vol, Orientation((2, 0, 1), 3)) == [(0, "x")]
    assert propose_axis(vol, Orientation((2, 0, 1), 3)) == 0
