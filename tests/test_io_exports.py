"""Tests for object exports (napari_sam2.io.exports.objects)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_sam2.io.exports.objects import _to_uint8, cutout_rgba, export_object_masks, save_cutout


@pytest.fixture
def nuclei(shared_data) -> tuple[np.ndarray, np.ndarray]:
    return (
        tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif"),
        tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif"),
    )


def test_mask_png_per_object(nuclei, tmp_path):
    _, labels = nuclei
    paths = export_object_masks(labels, tmp_path / "masks")
    ids = np.unique(labels)[1:]
    assert len(paths) == len(ids) == 125
    assert [p.name for p in paths[:2]] == [f"object_{ids[0]:04d}.png", f"object_{ids[1]:04d}.png"]
    union = np.zeros(labels.shape, bool)
    for path, label_id in zip(paths, ids, strict=True):
        mask = np.asarray(Image.open(path))
        assert mask.dtype == np.uint8 and mask.shape == labels.shape
        assert set(np.unique(mask)) == {0, 255}
        np.testing.assert_array_equal(mask == 255, labels == label_id)
        union |= mask == 255
    np.testing.assert_array_equal(union, labels > 0)


def test_masks_of_a_plane_of_a_stack(tmp_path):
    labels = np.zeros((3, 6, 7), np.int32)
    labels[1, 1:3, 2:5] = 4
    labels[2, 0, 0] = 9
    with pytest.raises(ValueError, match="need a `plane`"):
        export_object_masks(labels, tmp_path)
    paths = export_object_masks(labels, tmp_path, plane=1)
    assert [p.name for p in paths] == ["object_0004_plane-1.png"]
    assert np.asarray(Image.open(paths[0])).sum() == 6 * 255
    only = export_object_masks(labels[None], tmp_path, plane=(0, 2), ids=[9, 4])
    assert [p.name for p in only] == ["object_0004_plane-0-2.png", "object_0009_plane-0-2.png"]
    assert np.asarray(Image.open(only[0])).max() == 0  # 4 is absent from that plane


def test_cutout_of_real_nucleus(nuclei):
    image, labels = nuclei
    label_id = int(np.unique(labels)[10])
    mask = labels == label_id
    rows, cols = np.nonzero(mask)
    rgba = cutout_rgba(image, mask)
    assert rgba.dtype == np.uint8
    assert rgba.shape == (np.ptp(rows) + 1, np.ptp(cols) + 1, 4)
    box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    np.testing.assert_array_equal(rgba[..., 3] == 255, box)
    assert set(np.unique(rgba[..., 3])) <= {0, 255}
    # gray image: R = G = B, and a bright nucleus is bright after normalisation
    np.testing.assert_array_equal(rgba[..., 0], rgba[..., 1])
    # values are the plane mapped with its robust (0.5, 99.8) percentiles
    low, high = np.percentile(image, (0.5, 99.8))
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(float)
    expected = np.round(np.clip((crop - low) / (high - low), 0, 1) * 255)
    np.testing.assert_array_equal(rgba[..., 0], expected.astype(np.uint8))
    assert rgba[..., 0][box].mean() > rgba[..., 0][~box].mean()  # nucleus brighter than around


def test_cutout_contrast_limits_are_applied():
    image = np.array([[0, 100], [200, 400]], np.uint16)
    mask = np.ones((2, 2), bool)
    rgba = cutout_rgba(image, mask, contrast_limits=(100, 300))
    np.testing.assert_array_equal(rgba[..., 0], [[0, 0], [128, 255]])


def test_robust_percentiles_ignore_outliers_and_nan():
    plane = np.linspace(0, 1000, 10_000).reshape(100, 100)
    plane[0, 0] = 1e9
    plane[0, 1] = np.nan
    out = _to_uint8(plane)
    assert out.dtype == np.uint8
    assert out[50, 50] == pytest.approx(128, abs=2)  # not squashed by the 1e9 outlier
    assert out[0, 1] == 0


def test_cutout_rgb_uint8_passthrough():
    rgb = np.random.default_rng(2).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    mask = np.zeros((5, 6), bool)
    mask[1:4, 2:4] = True
    rgba = cutout_rgba(rgb, mask)
    np.testing.assert_array_equal(rgba[..., :3], rgb[1:4, 2:4])


def test_cutout_errors():
    with pytest.raises(ValueError, match="empty"):
        cutout_rgba(np.zeros((4, 4)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="does not match"):
        cutout_rgba(np.zeros((4, 4)), np.ones((3, 4), bool))


def test_save_cutout_png(tmp_path):
    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:7] = True
    path = save_cutout(tmp_path / "sub" / "obj.png", image, mask, contrast_limits=(0, 63))
    loaded = np.asarray(Image.open(path))
    assert Image.open(path).mode == "RGBA"
    np.testing.assert_array_equal(loaded, cutout_rgba(image, mask, (0, 63)))
    assert loaded.shape == (3, 4, 4)
