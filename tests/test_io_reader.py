"""Tests for napari_sam2.io.tiff.reader on the real files in tests/data."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.io.tiff.reader import TiffReadError, get_reader, open_tiff, read_tiff

TWO_CHANNEL = "ovule_nuclei_membrane_zcyx_uint16.ome.tif"  # see tests/data/README.md


def _expected_layers(entry: dict) -> tuple[int, tuple, list | None]:
    """Expected (layer count, per-layer shape, per-layer scale) from index.json."""
    axes, shape, scale = entry["axes"], tuple(entry["shape"]), entry["scale"]
    keep = [i for i, a in enumerate(axes) if a != "C"]
    count = shape[axes.index("C")] if "C" in axes else 1
    layer_scale = [scale[i] for i in keep] if scale else [1.0] * len(keep)
    return count, tuple(shape[i] for i in keep), layer_scale


def _check_each(entries: list[dict], check) -> None:
    """Run ``check(entry)`` on every entry; report every failing file at once."""
    failures = []
    for entry in entries:
        try:
            check(entry)
        except AssertionError as exc:
            failures.append(f"{entry['file']}: {exc}")
    assert not failures, "\n".join(failures)


def test_reader_on_every_shared_image(shared_data, shared_index):
    def check(entry: dict) -> None:
        path = shared_data / entry["file"]
        reader = get_reader(str(path))
        assert callable(reader)
        layers = reader(str(path))
        count, shape, scale = _expected_layers(entry)
        assert len(layers) == count
        axes = entry["axes"].replace("C", "").lower()
        for data, kwargs, layer_type in layers:
            assert layer_type == "image"
            assert data.shape == shape
            assert data.dtype == np.dtype(entry["dtype"])
            np.testing.assert_allclose(kwargs["scale"], scale, rtol=1e-5)
            assert kwargs["axis_labels"] == tuple(axes)
            expected_unit = "micrometer" if entry["scale"] else "pixel"
            assert kwargs["units"] == (expected_unit,) * len(shape)
            low, high = kwargs["contrast_limits"]
            assert low < high

    assert len(shared_index) >= 7
    _check_each(shared_index, check)


def test_ground_truth_labels_open_as_labels(shared_data, shared_index):
    def check(entry: dict) -> None:
        layers = read_tiff(shared_data / entry["labels"])
        assert len(layers) == 1
        data, kwargs, layer_type = layers[0]
        assert layer_type == "labels"
        assert data.shape == tuple(entry["shape"])
        assert data.dtype == np.uint16
        assert data.max() > 1
        assert "napari_sam2" not in kwargs.get("metadata", {})

    with_labels = [e for e in shared_index if e.get("labels")]
    assert len(with_labels) >= 6
    _check_each(with_labels, check)


def test_ome_two_channels_become_two_layers(shared_data):
    layers = read_tiff(shared_data / TWO_CHANNEL)
    assert len(layers) == 2
    (d0, k0, _), (d1, k1, _) = layers
    assert d0.shape == d1.shape == (5, 100, 100)
    assert d0.dtype == np.uint16
    np.testing.assert_allclose(k0["scale"], (0.283718, 0.126786, 0.126786), rtol=1e-4)
    assert k0["units"] == ("micrometer",) * 3
    assert k0["axis_labels"] == ("z", "y", "x")
    assert (k0["name"], k1["name"]) == ("nuclei", "membrane")
    assert (k0["colormap"], k1["colormap"]) == ("magenta", "green")
    assert (k0["blending"], k1["blending"]) == ("translucent_no_depth", "additive")
    full = tifffile.imread(shared_data / TWO_CHANNEL)
    np.testing.assert_array_equal(d1, full[:, 1])


def test_imagej_metadata_scale(shared_data):
    data, info = open_tiff(shared_data / "ovule_membrane_zyx_uint8.tif")
    assert info.kind == "imagej"
    assert info.axes == "ZYX"
    np.testing.assert_allclose(info.scale, (0.235, 0.15, 0.15), rtol=1e-6)
    assert info.record is None
    assert isinstance(data, np.ndarray)


def test_forced_lazy_returns_dask_and_reads_one_plane(shared_data):
    import dask.array as da

    path = shared_data / TWO_CHANNEL
    layers = read_tiff(path, lazy=True)
    data = layers[1][0]
    assert isinstance(data, da.Array)
    assert data.shape == (5, 100, 100)
    plane = np.asarray(data[3])
    np.testing.assert_array_equal(plane, tifffile.imread(path)[3, 1])
    # the chunks are single planes: a plane read touches one chunk only
    assert data.chunksize[-2:] == (100, 100)
    assert data[3].npartitions == 1


def test_lazy_threshold_decides(shared_data):
    import dask.array as da

    path = shared_data / "ovule_membrane_zyx_uint8.tif"
    eager, info = open_tiff(path)
    assert isinstance(eager, np.ndarray) and not info.lazy
    lazy, info = open_tiff(path, lazy_threshold=1000)
    assert isinstance(lazy, da.Array) and info.lazy
    np.testing.assert_array_equal(np.asarray(lazy[17]), eager[17])


# The file's pixel data end at byte 524 656; every cut below loses pixels.
@pytest.mark.parametrize("nbytes", [100, 1000, 200_000, 524_000])
def test_truncated_tiff_gives_clear_error(shared_data, tmp_path, nbytes):
    source = (shared_data / "ovule_membrane_zyx_uint8.tif").read_bytes()
    broken = tmp_path / "broken_stack.tif"
    broken.write_bytes(source[:nbytes])
    reader = get_reader(str(broken))
    assert callable(reader)  # it looks like a TIFF ...
    with pytest.raises(TiffReadError, match="broken_stack.tif"):
        reader(str(broken))  # ... but cannot be read


def test_truncated_ome_tiff_gives_clear_error(shared_data, tmp_path):
    source = (shared_data / "em_fibsem_medulla_zyx_uint8.ome.tif").read_bytes()
    broken = tmp_path / "cut.ome.tif"
    broken.write_bytes(source[: len(source) // 2])
    with pytest.raises(TiffReadError, match=r"cut\.ome\.tif"):
        read_tiff(broken)


def test_not_a_tiff(tmp_path):
    fake = tmp_path / "notes.tif"
    fake.write_text("this is not an image\n")
    # get_reader declines, so napari can try other readers
    assert get_reader(str(fake)) is None
    # called directly, the reader says what is wrong
    with pytest.raises(TiffReadError, match="notes.tif is not a TIFF"):
        read_tiff(fake)


def test_get_reader_declines_other_inputs(tmp_path):
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert get_reader(str(png)) is None
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(tmp_path / "missing.tif")) is None
    assert get_reader([str(png), str(png)]) is None
    with pytest.raises(FileNotFoundError):
        read_tiff(tmp_path / "missing.tif")


def test_imagej_composite_ranges_and_time(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, size=(3, 2, 2, 16, 24), dtype=np.uint16)  # TZCYX
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={
            "axes": "TZCYX",
            "spacing": 1.5,
            "unit": "micron",
            "finterval": 30.0,
            "Ranges": (10.0, 3000.0, 50.0, 3500.0),
            "mode": "composite",
        },
    )
    layers = read_tiff(path)
    assert len(layers) == 2
    for i, (d, kwargs, layer_type) in enumerate(layers):
        assert layer_type == "image"
        assert d.shape == (3, 2, 16, 24)
        np.testing.assert_array_equal(d, data[:, :, i])
        assert kwargs["axis_labels"] == ("t", "z", "y", "x")
        np.testing.assert_allclose(kwargs["scale"], (30.0, 1.5, 0.25, 0.25))
        assert kwargs["units"] == ("second", "micrometer", "micrometer", "micrometer")
    assert layers[0][1]["contrast_limits"] == [10.0, 3000.0]
    assert layers[1][1]["contrast_limits"] == [50.0, 3500.0]


def test_plain_tiff_resolution_in_centimetre(tmp_path):
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), resolution=(20000, 20000), resolutionunit=3)
    ((_, kwargs, _),) = read_tiff(path)
    np.testing.assert_allclose(kwargs["scale"], (0.5, 0.5))
    assert kwargs["units"] == ("micrometer", "micrometer")


def test_rgb_tiff_is_one_rgb_layer(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    ((data, kwargs, layer_type),) = read_tiff(path)
    assert layer_type == "image" and kwargs["rgb"] is True
    assert data.shape == (20, 30, 3)
    assert kwargs["axis_labels"] == ("y", "x")


def test_napari_opens_ome_with_plugin(shared_data, make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open(shared_data / TWO_CHANNEL, plugin="napari-sam2")
    assert [layer.name for layer in layers] == ["nuclei", "membrane"]
    for layer in layers:
        assert layer.data.shape == (5, 100, 100)
        np.testing.assert_allclose(layer.scale, (0.283718, 0.126786, 0.126786), rtol=1e-4)
        assert tuple(layer.axis_labels) == ("z", "y", "x")
        assert all(str(u) == "micrometer" for u in layer.units)
    assert layers[1].colormap.name == "green"


def test_napari_opens_ground_truth_labels(shared_data, make_napari_viewer):
    from napari.layers import Labels

    viewer = make_napari_viewer()
    (layer,) = viewer.open(
        shared_data / "ovule_membrane_zyx_uint8_labels.tif", plugin="napari-sam2"
    )
    assert isinstance(layer, Labels)
    assert layer.data.shape == (32, 128, 128)
    np.testing.assert_allclose(layer.scale, (0.235, 0.15, 0.15))
