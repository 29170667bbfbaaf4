"""Multiscale (pyramid) TIFFs: OME SubIFD pyramids and tifffile series with levels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.io.tiff.reader import (
    MULTISCALE_MIN_SIZE,
    TiffReadError,
    get_reader,
    open_tiff,
    read_tiff,
)
from napari_sam2.io.tiff.writer import save_labels

FULL_YX = (2304, 2560)  # above MULTISCALE_MIN_SIZE in both directions
PIXEL_UM = 0.25


def _pattern(shape: tuple[int, int], channels: int) -> np.ndarray:
    """A compressible, non-constant CYX uint16 image (fast to write with zlib)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = ((yy // 7 + xx // 5) % 4000).astype(np.uint16)
    return np.stack([base * (c + 1) for c in range(channels)])


def _write_ome_pyramid(
    path, data: np.ndarray, levels: int, *, axes: str = "CYX", names=("DAPI", "GFP")
) -> list[np.ndarray]:
    """OME-TIFF pyramid as bioformats writes it: level 0 + ``levels - 1`` SubIFDs."""
    metadata = {"axes": axes, "PhysicalSizeX": PIXEL_UM, "PhysicalSizeY": PIXEL_UM}
    if "C" in axes:
        metadata["Channel"] = {"Name": list(names)}
    stored = [data[..., :: 2**i, :: 2**i] for i in range(levels)]
    opts = {"tile": (256, 256), "compression": "zlib"}
    with tifffile.TiffWriter(path) as tw:
        tw.write(stored[0], subifds=levels - 1, metadata=metadata, **opts)
        for level in stored[1:]:
            tw.write(level, subfiletype=1, **opts)
    return stored


@pytest.fixture
def ome_pyramid(tmp_path):
    path = tmp_path / "slide.ome.tif"
    levels = _write_ome_pyramid(path, _pattern(FULL_YX, 2), 3)
    return path, levels


def test_ome_pyramid_is_one_multiscale_layer_per_channel(ome_pyramid):
    import dask.array as da

    path, stored = ome_pyramid
    reader = get_reader(str(path))
    layers = reader(str(path))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["DAPI", "GFP"]
    for c, (data, kwargs, layer_type) in enumerate(layers):
        assert layer_type == "image"
        assert kwargs["multiscale"] is True
        assert isinstance(data, list)
        assert [level.shape for level in data] == [(2304, 2560), (1152, 1280), (576, 640)]
        assert all(isinstance(level, da.Array) for level in data)
        assert all(level.dtype == np.uint16 for level in data)
        assert kwargs["scale"] == (PIXEL_UM, PIXEL_UM)  # level 0's pixel size
        assert kwargs["units"] == ("micrometer", "micrometer")
        assert kwargs["axis_labels"] == ("y", "x")
        # the right channel and level behind each array
        np.testing.assert_array_equal(
            np.asarray(data[1][100:140, 300:350]), stored[1][c, 100:140, 300:350]
        )
        np.testing.assert_array_equal(np.asarray(data[0][-5:, -7:]), stored[0][c, -5:, -7:])
        # display limits come from the smallest level
        expected = np.percentile(stored[2][c], (0.1, 99.9))
        np.testing.assert_allclose(kwargs["contrast_limits"], expected)
    assert (layers[0][1]["colormap"], layers[1][1]["colormap"]) == ("blue", "green")


def test_pyramid_reads_nothing_but_the_smallest_level(ome_pyramid, tmp_path):
    path, stored = ome_pyramid
    # zero every tile of levels 0 and 1: decoding any of them fails
    with tifffile.TiffFile(path) as tif:
        tiles = [
            (offset, count)
            for level in tif.series[0].levels[:2]
            for page in level.pages
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
        ]
    raw = bytearray(path.read_bytes())
    for offset, count in tiles:
        raw[offset : offset + count] = bytes(count)
    broken = tmp_path / "broken_levels.ome.tif"
    broken.write_bytes(bytes(raw))

    layers = read_tiff(broken)  # must not decode level 0 or 1
    assert len(layers) == 2
    data = layers[1][0]
    np.testing.assert_array_equal(np.asarray(data[2]), stored[2][1])
    with pytest.raises(Exception, match="(?i)deflate|zlib|decompress"):
        np.asarray(data[0][:16, :16])  # the corruption is real: level 0 cannot be read


def test_small_pyramid_opens_its_full_resolution_as_plain_layer(tmp_path):
    path = tmp_path / "small.ome.tif"
    stored = _write_ome_pyramid(path, _pattern((600, 520), 2), 2)
    assert max(600, 520) < MULTISCALE_MIN_SIZE
    layers = read_tiff(path)
    assert len(layers) == 2
    for c, (data, kwargs, _) in enumerate(layers):
        assert isinstance(data, np.ndarray)
        assert "multiscale" not in kwargs
        np.testing.assert_array_equal(data, stored[0][c])
        assert kwargs["scale"] == (PIXEL_UM, PIXEL_UM)
    # asked for, a small pyramid is multiscale too; and never when refused
    ((levels, kwargs, _), _) = read_tiff(path, multiscale=True)
    assert [level.shape for level in levels] == [(600, 520), (300, 260)]
    assert kwargs["multiscale"] is True


def test_multiscale_false_gives_full_resolution(ome_pyramid):
    path, stored = ome_pyramid
    layers = read_tiff(path, multiscale=False, lazy=True)
    data, kwargs, _ = layers[0]
    assert not isinstance(data, list) and "multiscale" not in kwargs
    assert data.shape == FULL_YX
    np.testing.assert_array_equal(np.asarray(data[:20, :30]), stored[0][0, :20, :30])


def test_open_tiff_returns_one_level(ome_pyramid):
    path, stored = ome_pyramid
    data, info = open_tiff(path, lazy=True)
    assert not isinstance(data, list)
    assert data.shape == (2, *FULL_YX)
    assert info.is_pyramid and info.level == 0
    assert info.level_shapes == ((2, 2304, 2560), (2, 1152, 1280), (2, 576, 640))
    assert info.scale == (1.0, PIXEL_UM, PIXEL_UM)

    small, info = open_tiff(path, level=-1)
    assert isinstance(small, np.ndarray)
    np.testing.assert_array_equal(small, stored[2])
    assert info.level == 2 and info.shape == (2, 576, 640)
    assert info.scale == (1.0, 4 * PIXEL_UM, 4 * PIXEL_UM)  # 4x coarser pixels
    assert info.units == ("pixel", "micrometer", "micrometer")

    with pytest.raises(TiffReadError, match=r"slide\.ome\.tif has 3 levels; level=3"):
        open_tiff(path, level=3)


def test_plain_tifffile_pyramid_with_levels(tmp_path):
    """A non-OME tifffile pyramid (SubIFDs, resolution in cm) is read the same way."""
    path = tmp_path / "plain_pyramid.tif"
    image = _pattern((2100, 1000), 1)[0]
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            image, subifds=1, tile=(256, 256), resolution=(20000, 20000), resolutionunit=3
        )  # 0.5 µm pixels
        tw.write(image[::2, ::2], subfiletype=1, tile=(256, 256))
    ((data, kwargs, _),) = read_tiff(path)
    assert kwargs["name"] == "plain_pyramid"
    assert kwargs["multiscale"] is True and kwargs["colormap"] == "gray"
    assert [level.shape for level in data] == [(2100, 1000), (1050, 500)]
    np.testing.assert_allclose(kwargs["scale"], (0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(data[1]), image[::2, ::2])


def test_labels_made_on_a_pyramid_line_up(ome_pyramid, tmp_path):
    path, _ = ome_pyramid
    levels, image_kwargs, _ = read_tiff(path)[0]
    # a segmentation painted on the full-resolution level
    labels = np.zeros(levels[0].shape, np.uint16)
    labels[1000:1100, 2000:2150] = 3
    target = save_labels(
        tmp_path / "slide_seg.ome.tif",
        labels,
        scale=image_kwargs["scale"],
        units=image_kwargs["units"],
        axes="YX",
        name="slide_seg",
    )
    ((back, kwargs, layer_type),) = read_tiff(target)
    assert layer_type == "labels"
    assert back.shape == levels[0].shape == FULL_YX
    assert kwargs["scale"] == image_kwargs["scale"]
    np.testing.assert_array_equal(back, labels)


def test_napari_pyramid_and_labels_share_world_extent(ome_pyramid, tmp_path, make_napari_viewer):
    path, _ = ome_pyramid
    viewer = make_napari_viewer()
    image, _ = viewer.open(path, plugin="napari-sam2")
    assert image.multiscale is True
    assert image.data[0].shape == FULL_YX
    labels = np.zeros(FULL_YX, np.uint16)
    labels[1000:1100, 2000:2150] = 3
    target = save_labels(
        tmp_path / "seg.tif", labels, scale=tuple(image.scale), units="um", axes="YX"
    )
    (seg,) = viewer.open(target, plugin="napari-sam2")
    np.testing.assert_allclose(seg.extent.world, image.extent.world)
    # napari extents span pixel centres: (n - 1) pixels
    np.testing.assert_allclose(seg.extent.world[1], (np.array(FULL_YX) - 1) * PIXEL_UM)
    point = (1050 * PIXEL_UM, 2100 * PIXEL_UM)
    np.testing.assert_allclose(image.world_to_data(point), (1050, 2100))
    np.testing.assert_allclose(seg.world_to_data(point), (1050, 2100))
    assert seg.get_value(point, world=True) == 3
