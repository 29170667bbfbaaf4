"""Tests for the shipped sample data (napari_sam2.io.samples)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.io.samples import (
    SAMPLES,
    bacteria_timelapse,
    nuclei_2d,
    nuclei_3d,
    sample_path,
)


@pytest.mark.parametrize(
    ("loader", "shape", "dtype", "scale", "axes", "unit"),
    [
        (nuclei_2d, (512, 512), np.uint16, (1.0, 1.0), ("y", "x"), "pixel"),
        (
            nuclei_3d,
            (100, 100, 100),
            np.uint8,
            (0.283718, 0.126786, 0.126786),
            ("z", "y", "x"),
            "micrometer",
        ),
        (bacteria_timelapse, (10, 320, 320), np.uint8, (1.0, 1.0, 1.0), ("t", "y", "x"), "pixel"),
    ],
)
def test_sample_layers(loader, shape, dtype, scale, axes, unit):
    layers = loader()
    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    assert layer_type == "image"
    assert isinstance(data, np.ndarray)
    assert data.shape == shape and data.dtype == dtype
    np.testing.assert_allclose(kwargs["scale"], scale, rtol=1e-5)
    assert kwargs["axis_labels"] == axes
    assert kwargs["units"] == (unit,) * len(shape)
    assert kwargs["colormap"] == "gray"
    low, high = kwargs["contrast_limits"]
    assert data.min() <= low < high <= data.max()
    assert kwargs["metadata"]["sample"]["licence"]


def test_nuclei_2d_stays_16_bit_with_its_dynamic_range():
    ((data, kwargs, _),) = nuclei_2d()
    assert data.dtype == np.uint16
    assert kwargs["contrast_limits"][1] > 100  # not squashed to 8 bit


@pytest.mark.parametrize(
    ("key", "shared_name", "frames"),
    [
        ("nuclei_2d", "nuclei2d_dsb2018_uint16.tif", None),
        ("nuclei_3d", "nuclei3d_ovule_zyx_uint8.tif", None),
        ("bacteria_timelapse", "bacteria_phase_tyx_uint8.tif", 10),
    ],
)
def test_samples_are_the_real_pixels(shared_data, key, shared_name, frames):
    original = tifffile.imread(shared_data / shared_name)
    if frames:
        original = original[:frames]
    np.testing.assert_array_equal(tifffile.imread(sample_path(key)), original)


def test_sample_files_ship_small_compressed_and_attributed():
    data_dir = sample_path("nuclei_2d").parent  # the installed package's data folder
    attribution = (data_dir / "ATTRIBUTION.md").read_text(encoding="utf-8")
    total = 0
    for key, info in SAMPLES.items():
        path = sample_path(key)
        assert path.parent == data_dir
        assert info.filename in attribution
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        total += path.stat().st_size
    assert total < 3 * 2**20
    shipped = {p.name for p in data_dir.iterdir()}
    # GPL-3.0 files of the shared data must never be copied into the package
    assert not shipped & {"mitosis_spindle_zcyx_uint16.ome.tif", "cells_dapi_gfp_cyx_uint8.tif"}
    assert "cropped in time" in attribution


def test_unknown_sample_key():
    with pytest.raises(KeyError, match="nuclei_3d"):
        sample_path("nuclei_4d")


def test_napari_open_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-sam2", "nuclei_3d")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.data.shape == (100, 100, 100)
    np.testing.assert_allclose(layer.scale, (0.283718, 0.126786, 0.126786), rtol=1e-5)
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    assert str(layer.units[0]) == "micrometer"
