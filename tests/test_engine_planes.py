"""Plane access and stack-wide normalisation, on real data and on every dtype/layout."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

from napari_sam2.engine.errors import ImageError
from napari_sam2.engine.planes import Normalization, PlaneSource, guess_rgb


def _check_sam_input(x: np.ndarray, shape) -> None:
    assert x.dtype == np.float32
    assert x.shape == (*shape, 3)
    assert x.flags.c_contiguous
    assert np.isfinite(x).all()
    assert x.min() >= 0.0 and x.max() <= 1.0


def _expected(plane, low, high) -> np.ndarray:
    return np.clip((plane.astype(np.float64) - low) / (high - low), 0, 1)


# ------------------------------------------------------------------------ real data
def test_12bit_like_uint16_is_not_rendered_dark(shared_data):
    """dsb2018 nuclei: a uint16 image whose values only reach 235."""
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    nuclei = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif") > 0
    assert img.dtype == np.uint16 and img.max() < 256
    src = PlaneSource(img)
    x = src.sam_image()
    _check_sam_input(x, img.shape)
    dtype_range = img.astype(np.float32) / 65535.0  # what a dtype-range scaling gives
    assert dtype_range.mean() < 0.001
    assert x.mean() > 0.1
    assert x.mean() > 100 * dtype_range.mean()
    # nuclei are clearly visible, and the stack's bright end reaches the top of the range
    assert np.median(x[..., 0][nuclei]) > 0.2
    assert np.median(x[..., 0][~nuclei]) < np.median(x[..., 0][nuclei]) - 0.1
    assert np.percentile(x, 99.8) > 0.95
    assert x.max() == 1.0
    assert src.normalization.source == "percentiles"
    lo, hi = np.percentile(img, src.percentiles)
    assert src.normalization.low[0] == pytest.approx(lo, abs=1)
    assert src.normalization.high[0] == pytest.approx(hi, abs=1)


def test_zstack_planes_use_stack_wide_limits(shared_data):
    stack = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8.tif")
    assert stack.ndim == 3
    first = PlaneSource(stack)
    first.sam_image(0)
    last = PlaneSource(stack)
    last.sam_image(stack.shape[0] - 1)
    # the limits do not depend on which plane was read first
    assert first.normalization == last.normalization
    norm = first.normalization
    assert norm.source == "percentiles"
    # and they are the whole stack's robust percentiles (from a bounded sample)
    lo, hi = np.percentile(stack, first.percentiles)
    span = float(stack.max()) - float(stack.min())
    assert abs(norm.low[0] - lo) < 0.03 * span
    assert abs(norm.high[0] - hi) < 0.03 * span

    differs_from_minmax = 0
    for z in (0, 50, stack.shape[0] - 1):
        x = first.sam_image(z)
        _check_sam_input(x, stack.shape[1:])
        plane = stack[z]
        np.testing.assert_allclose(
            x[..., 0], _expected(plane, norm.low[0], norm.high[0]), atol=1e-6
        )
        np.testing.assert_array_equal(x[..., 0], x[..., 2])
        minmax = (plane - plane.min()) / float(plane.max() - plane.min())
        differs_from_minmax += not np.allclose(x[..., 0], minmax, atol=0.02)
    # the planes' own min-max windows differ (max 246 vs 115): per-plane would be wrong
    assert differs_from_minmax >= 2


def test_zcyx_channel_axis_stack_wide_per_channel(shared_data):
    data = tifffile.imread(shared_data / "ovule_nuclei_membrane_zcyx_uint16.ome.tif")
    assert data.shape[:2] == (5, 2)
    src = PlaneSource(data, channel_axis=1, channel=1)
    assert src.index_shape == (5,) and src.plane_shape == data.shape[2:]
    assert src.n_channels == 2
    norm = src.normalization
    assert len(norm.low) == 2
    for c in range(2):
        lo, hi = np.percentile(data[:, c], src.percentiles)
        span = float(data[:, c].max())
        assert abs(norm.low[c] - lo) < 0.02 * span
        assert abs(norm.high[c] - hi) < 0.02 * span
    for z in range(5):
        x = src.sam_image(z)
        _check_sam_input(x, data.shape[2:])
        np.testing.assert_allclose(
            x[..., 0], _expected(data[z, 1], norm.low[1], norm.high[1]), atol=1e-6
        )
    # another plane read through a fresh source gives the same mapping
    again = PlaneSource(data, channel_axis=1, channel=1)
    again.sam_image(4)
    assert again.normalization == norm
    # channel 0 and 1 have very different ranges: each gets its own window
    assert norm.high[1] > 2 * norm.high[0]


# --------------------------------------------------------------------- contrast limits
def test_contrast_limits_are_used():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4096, (40, 50)).astype(np.uint16)
    src = PlaneSource(img, contrast_limits=(1000, 3000))
    assert src.normalization == Normalization((1000.0,), (3000.0,), "contrast_limits")
    x = src.sam_image()
    np.testing.assert_allclose(x[..., 1], _expected(img, 1000, 3000), atol=1e-6)
    assert (x == 0).any() and (x == 1).any()


def test_contrast_limits_per_channel_and_bad_limits():
    rng = np.random.default_rng(1)
    img = rng.random((2, 30, 40)).astype(np.float32) * [[[10.0]], [[1000.0]]]
    src = PlaneSource(img, channel_axis=0, channel="composite", contrast_limits=[(0, 5), (0, 500)])
    x = src.sam_image()
    np.testing.assert_allclose(x[..., 0], _expected(img[0], 0, 5), atol=1e-6)
    np.testing.assert_allclose(x[..., 1], _expected(img[1], 0, 500), atol=1e-6)
    assert (x[..., 2] == 0).all()
    with pytest.raises(ImageError, match="contrast_limits"):
        _ = PlaneSource(img, channel_axis=0, contrast_limits=[(0, 1)] * 3).normalization
    with pytest.raises(ImageError, match="contrast_limits"):
        _ = PlaneSource(img[0], contrast_limits=(0, np.nan)).normalization


# --------------------------------------------------------------------------- dtypes
def _blob_image(dtype) -> np.ndarray:
    yy, xx = np.mgrid[:48, :64]
    blob = ((yy - 20) ** 2 + (xx - 30) ** 2) < 100
    if dtype is bool:
        return blob
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (info.min // 2, info.max // 2) if info is not None else (-3.5, 1e4)
    if info is not None and info.min == 0:
        lo = info.max // 10
    img = np.where(blob, hi, lo).astype(dtype)
    return img


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64, bool])
def test_dtypes_map_to_full_range(dtype):
    img = _blob_image(dtype)
    src = PlaneSource(img)
    x = src.sam_image()
    _check_sam_input(x, img.shape)
    blob = _blob_image(bool)
    assert x[..., 0][blob].min() == pytest.approx(1.0)
    assert x[..., 0][~blob].max() == pytest.approx(0.0)
    g = src.gray_image()
    assert g.shape == img.shape and g.dtype == np.float32


def test_nan_and_inf_give_finite_output():
    rng = np.random.default_rng(2)
    img = rng.random((32, 32)).astype(np.float32)
    img[0, :5] = np.nan
    img[1, :5] = np.inf
    img[2, :5] = -np.inf
    src = PlaneSource(img)
    assert all(np.isfinite(v) for v in src.normalization.low + src.normalization.high)
    x = src.sam_image()
    _check_sam_input(x, img.shape)
    assert (x[0, :5] == 0).all() and (x[1, :5] == 1).all() and (x[2, :5] == 0).all()
    # the window comes from the finite values, so the rest keeps its contrast
    assert x[3:].std() > 0.2


def test_all_nan_image():
    x = PlaneSource(np.full((8, 9), np.nan)).sam_image()
    _check_sam_input(x, (8, 9))


@pytest.mark.parametrize("value", [0, 7, 65535])
def test_constant_image(value):
    img = np.full((16, 20), value, np.uint16)
    x = PlaneSource(img).sam_image()
    _check_sam_input(x, img.shape)
    assert np.ptp(x) == 0


def test_unsupported_dtype():
    with pytest.raises(ImageError, match="dtype"):
        PlaneSource(np.zeros((4, 4), complex))
    with pytest.raises(ImageError, match="2 spatial"):
        PlaneSource(np.zeros(5))


# ---------------------------------------------------------------------- RGB, channels
def test_rgb_uint8_is_divided_by_255():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 200, (20, 30, 3)).astype(np.uint8)
    src = PlaneSource(img)
    assert src.rgb and src.plane_shape == (20, 30) and src.index_shape == ()
    assert src.normalization.source == "rgb8"
    np.testing.assert_allclose(src.sam_image(), img / 255.0, atol=1e-6)


def test_rgba_drops_alpha():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (20, 30, 4)).astype(np.uint8)
    x = PlaneSource(img).sam_image()
    _check_sam_input(x, (20, 30))
    np.testing.assert_allclose(x, img[..., :3] / 255.0, atol=1e-6)


def test_rgb_uint16_keeps_hues_with_one_window():
    img = np.zeros((10, 10, 3), np.uint16)
    img[..., 0] = 4000
    img[..., 1] = 2000
    img[5:, :, 2] = 1000
    src = PlaneSource(img)
    n = src.normalization
    assert n.low[0] == n.low[1] == n.low[2] and n.high[0] == n.high[1] == n.high[2]
    x = src.sam_image()
    assert (x[..., 0] > x[..., 1]).all()


def test_rgb_time_series():
    img = np.zeros((3, 12, 14, 3), np.uint8)
    img[2, 4:8, 4:8] = 255
    src = PlaneSource(img)
    assert src.index_shape == (3,)
    assert src.sam_image(0).max() == 0
    assert src.sam_image(2).max() == 1


def test_rgb_flag_overrides_guess():
    img = np.random.default_rng(5).random((4, 10, 3)).astype(np.float32)  # 4 planes, W=3
    assert guess_rgb(img.shape)
    src = PlaneSource(img, rgb=False)
    assert src.index_shape == (4,) and src.plane_shape == (10, 3)
    with pytest.raises(ImageError, match="rgb=True"):
        PlaneSource(np.zeros((10, 10)), rgb=True)


@pytest.fixture
def three_channels():
    """(C, H, W): three channels with different ranges and objects."""
    img = np.zeros((3, 20, 24), np.float32)
    img[0, 2:8, 2:8] = 100.0  # object A in channel 0 (range 100)
    img[1, 12:18, 2:8] = 5000.0  # object B in channel 1 (range 5000)
    img[1, 2:8, 2:8] = 2500.0  # half-bright A in channel 1
    img[2, 12:18, 14:20] = 1.0  # object C in channel 2 (range 1)
    return img


def test_channel_int(three_channels):
    src = PlaneSource(three_channels, channel_axis=0, channel=1)
    x = src.sam_image()
    assert x[15, 5, 0] == 1.0 and x[5, 5, 0] == pytest.approx(0.5)
    assert x[15, 17, 0] == 0.0
    np.testing.assert_array_equal(x[..., 0], x[..., 1])


def test_channel_mean(three_channels):
    x = PlaneSource(three_channels, channel_axis=0, channel="mean").sam_image()
    # every channel normalised to [0, 1] first, then averaged
    assert x[5, 5, 0] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert x[15, 5, 0] == pytest.approx(1 / 3)
    assert x[15, 17, 0] == pytest.approx(1 / 3)
    assert x[0, 23, 0] == 0


def test_channel_max(three_channels):
    x = PlaneSource(three_channels, channel_axis=0, channel="max").sam_image()
    assert x[5, 5, 0] == 1.0 and x[15, 5, 0] == 1.0 and x[15, 17, 0] == 1.0
    assert x[0, 23, 0] == 0


def test_channel_composite(three_channels):
    x = PlaneSource(three_channels, channel_axis=0, channel="composite").sam_image()
    np.testing.assert_allclose(x[5, 5], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(x[15, 5], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(x[15, 17], [0.0, 0.0, 1.0])


def test_channel_axis_errors(three_channels):
    # the last two axes (or the two before RGB) are the plane: never a channel axis
    with pytest.raises(ImageError, match="spatial"):
        PlaneSource(np.moveaxis(three_channels, 0, -1)[None], channel_axis=-1, rgb=False)
    with pytest.raises(ImageError, match="cannot also have a channel axis"):
        PlaneSource(np.zeros((2, 10, 10, 3), np.uint8), channel_axis=0)
    with pytest.raises(ImageError, match="channel 3 does not exist"):
        PlaneSource(three_channels, channel_axis=0, channel=3)
    with pytest.raises(ImageError, match="channel must be"):
        PlaneSource(three_channels, channel_axis=0, channel="median")
    with pytest.raises(ImageError, match="spatial"):
        PlaneSource(three_channels, channel_axis=2)
    with pytest.raises(ImageError, match="out of range"):
        PlaneSource(three_channels, channel_axis=5)


# -------------------------------------------------------------------- plane indexing
def test_plane_index_checks():
    src = PlaneSource(np.zeros((3, 4, 10, 12), np.uint8))
    assert src.index_shape == (3, 4)
    assert src.check_index((2, 3)) == (2, 3)
    assert src.check_index([np.int64(1), 0]) == (1, 0)
    assert len(list(src.iter_indices())) == 12
    with pytest.raises(ImageError, match="outside the stack"):
        src.sam_image((3, 0))
    with pytest.raises(ImageError, match="does not match"):
        src.sam_image((1,))
    flat = PlaneSource(np.zeros((10, 12)))
    assert flat.check_index(None) == () and flat.check_index(()) == ()
    assert PlaneSource(np.zeros((5, 10, 12))).check_index(3) == (3,)


def test_plane_index_mismatch_says_what_to_give():
    """A missing or extra plane index says how many indices the image needs, with an
    example, and a small leading axis (a CYX image passed without channel_axis) gets the
    channel_axis hint."""
    with pytest.raises(ImageError, match=r"1 axis besides the \(row, col\) plane.*e\.g\. \(50,\)"):
        PlaneSource(np.zeros((100, 10, 12), np.uint8)).check_index(())
    with pytest.raises(ImageError, match=r"2 axes .* give 2 indices, e\.g\. \(1, 2\)"):
        PlaneSource(np.zeros((3, 5, 10, 12), np.uint8)).check_index((1,))
    with pytest.raises(ImageError, match="single 2-D plane, so give no plane index"):
        PlaneSource(np.zeros((10, 12), np.uint8)).check_index((3,))
    with pytest.raises(
        ImageError, match="If axis 0 .length 2. holds channels, pass channel_axis=0"
    ):
        PlaneSource(np.zeros((2, 64, 64), np.uint8)).check_index(())
    with pytest.raises(ImageError) as e:
        PlaneSource(np.zeros((2, 5, 64, 64), np.uint8), channel_axis=0).check_index(())
    assert "channel_axis" not in str(e.value)
    with pytest.raises(ImageError) as e:  # a plane was given, just too short: no hint
        PlaneSource(np.zeros((2, 5, 64, 64), np.uint8)).check_index((1,))
    assert "channel_axis" not in str(e.value)


def test_plane_key_follows_content_not_identity():
    rng = np.random.default_rng(6)
    stack = rng.integers(0, 1000, (3, 16, 16)).astype(np.uint16)
    a = PlaneSource(stack, contrast_limits=(0, 1000))
    b = PlaneSource(stack.copy(), contrast_limits=(0, 1000))
    assert a.plane_key(1) == b.plane_key(1)
    assert a.plane_key(0) != a.plane_key(1)
    key = a.plane_key(2)
    stack[2, 5, 5] += 1  # one changed pixel
    assert a.plane_key(2) != key
    # another window is another SAM input
    assert PlaneSource(stack, contrast_limits=(0, 500)).plane_key(1) != a.plane_key(1)
    assert PlaneSource(stack.astype(np.int32), contrast_limits=(0, 1000)).plane_key(
        1
    ) != a.plane_key(1)


# --------------------------------------------------------------------- lazy arrays
def _counting_dask_stack(n=12, shape=(32, 40)):
    da = pytest.importorskip("dask.array")
    from dask import delayed

    reads: list[int] = []
    lock = threading.Lock()

    def read(z):
        with lock:
            reads.append(z)
        img = np.zeros(shape, np.uint16)
        img[4:12, 4 + z : 12 + z] = 1000 + 100 * z
        return img

    planes = [da.from_delayed(delayed(read)(z), shape, np.uint16) for z in range(n)]
    return da.stack(planes), reads


def test_dask_plane_read_reads_only_that_plane():
    arr, reads = _counting_dask_stack()
    src = PlaneSource(arr, contrast_limits=(0, 2000))
    assert reads == []  # nothing read on construction
    x = src.sam_image(7)
    assert reads == [7]
    assert x[5, 12, 0] == pytest.approx(1700 / 2000)
    src.plane_key(3)
    assert reads == [7, 3]


def test_dask_stack_percentiles_read_a_bounded_sample():
    arr, reads = _counting_dask_stack(n=40)
    src = PlaneSource(arr)
    _ = src.normalization
    assert 0 < len(reads) <= 16
    assert len(set(reads)) == len(reads)
    assert 0 in reads and 39 in reads  # spread over the whole stack
    reads.clear()
    src.sam_image(21)
    assert reads == [21]


class RecordingArray:
    """A minimal lazy array-like (like a zarr array) that records every read."""

    def __init__(self, data):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.keys: list = []

    def __getitem__(self, key):
        self.keys.append(key)
        return self._data[key]


def test_array_like_reads_one_plane():
    data = np.random.default_rng(7).integers(0, 255, (6, 2, 20, 30)).astype(np.uint8)
    arr = RecordingArray(data)
    src = PlaneSource(arr, channel_axis=1, channel="max", contrast_limits=(0, 255))
    x = src.sam_image(4)
    assert len(arr.keys) == 1
    key = arr.keys[0]
    assert key[0] == 4 and key[1] == slice(None)
    expected = np.max(data[4] / 255.0, axis=0)
    np.testing.assert_allclose(x[..., 0], expected, atol=1e-6)


def test_zarr_array_input():
    zarr = pytest.importorskip("zarr")
    data = np.random.default_rng(8).integers(0, 4000, (4, 24, 24)).astype(np.uint16)
    z = zarr.create_array(store={}, shape=data.shape, chunks=(1, 24, 24), dtype=data.dtype)
    z[:] = data
    src = PlaneSource(z)
    assert src.index_shape == (4,)
    x = src.sam_image(2)
    n = src.normalization
    np.testing.assert_allclose(x[..., 0], _expected(data[2], n.low[0], n.high[0]), atol=1e-6)


def test_normalization_apply_and_dict():
    n = Normalization((10.0,), (20.0,), "contrast_limits")
    np.testing.assert_allclose(
        n.apply(np.array([0, 10, 15, 20, 30, np.nan, np.inf, -np.inf])),
        [0, 0, 0.5, 1, 1, 0, 1, 0],
    )
    assert n.to_dict() == {"source": "contrast_limits", "low": [10.0], "high": [20.0]}
    # degenerate window: no division by zero
    out = Normalization((5.0,), (5.0,), "percentiles").apply(np.array([4.0, 5.0, 6.0]))
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
