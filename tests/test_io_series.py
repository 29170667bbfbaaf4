"""TIFF files holding several image series (not pyramid levels)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.io.tiff import _tiffmeta as meta
from napari_sam2.io.tiff.reader import TiffReadError, get_reader, open_tiff, read_tiff

RNG = np.random.default_rng(7)


@pytest.fixture
def two_arrays(tmp_path):
    """tifffile's plain way: two arrays written one after the other into one file."""
    first = RNG.integers(0, 4000, (64, 80), dtype=np.uint16)
    second = RNG.integers(0, 255, (3, 32, 40), dtype=np.uint8)
    path = tmp_path / "pair.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(first, metadata={"axes": "YX"})
        tw.write(second, metadata={"axes": "ZYX"}, photometric="minisblack")
    return path, first, second


@pytest.fixture
def two_ome_images(tmp_path):
    """OME-TIFF with two Images of different axes, dtype, channels and pixel size."""
    cells = RNG.integers(0, 4000, (2, 48, 56), dtype=np.uint16)
    stack = RNG.integers(0, 255, (4, 32, 40), dtype=np.uint8)
    path = tmp_path / "plate.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            cells,
            metadata={
                "axes": "CYX",
                "Name": "well A1",
                "PhysicalSizeX": 0.3,
                "PhysicalSizeY": 0.3,
                "Channel": {"Name": ["DAPI", "mCherry"]},
            },
        )
        tw.write(
            stack,
            photometric="minisblack",
            metadata={
                "axes": "ZYX",
                "Name": "well B2",
                "PhysicalSizeX": 0.7,
                "PhysicalSizeY": 0.7,
                "PhysicalSizeZ": 2.0,
            },
        )
    return path, cells, stack


def test_every_series_of_a_plain_tiff_is_read(two_arrays):
    path, first, second = two_arrays
    layers = get_reader(str(path))(str(path))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["pair [series 0]", "pair [series 1]"]
    (d0, k0, t0), (d1, k1, t1) = layers
    assert t0 == t1 == "image"
    np.testing.assert_array_equal(d0, first)
    np.testing.assert_array_equal(d1, second)
    assert d0.dtype == np.uint16 and d1.dtype == np.uint8
    assert k0["axis_labels"] == ("y", "x")
    assert k1["axis_labels"] == ("z", "y", "x")


def test_scripted_api_reads_the_first_series_by_default(two_arrays):
    path, first, second = two_arrays
    ((data, kwargs, _),) = read_tiff(path)  # backwards compatible: one series, plain name
    assert kwargs["name"] == "pair"
    np.testing.assert_array_equal(data, first)
    data, info = open_tiff(path)
    np.testing.assert_array_equal(data, first)
    assert (info.series, info.series_count) == (0, 2)

    ((data, kwargs, _),) = read_tiff(path, series=1)
    assert kwargs["name"] == "pair"
    np.testing.assert_array_equal(data, second)
    data, info = open_tiff(path, series=-1)
    assert info.series == 1 and info.axes == "ZYX" and info.shape == (3, 32, 40)
    np.testing.assert_array_equal(data, second)


def test_series_out_of_range_or_wrong_type(two_arrays):
    path, _, _ = two_arrays
    with pytest.raises(TiffReadError, match=r"pair\.tif has 2 series; series=2 does not exist"):
        open_tiff(path, series=2)
    with pytest.raises(TiffReadError, match="series=-3"):
        read_tiff(path, series=-3)
    with pytest.raises(ValueError, match="'every'"):
        read_tiff(path, series="every")
    with pytest.raises(TypeError, match="series must be an integer"):
        open_tiff(path, series=1.0)


def test_ome_images_keep_their_own_metadata(two_ome_images):
    path, cells, stack = two_ome_images
    layers = read_tiff(path, series="all")
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == ["DAPI [well A1]", "mCherry [well A1]", "plate [well B2]"]
    (dapi, kd, _), (cherry, kc, _), (zstack, kz, _) = layers
    np.testing.assert_array_equal(dapi, cells[0])
    np.testing.assert_array_equal(cherry, cells[1])
    np.testing.assert_array_equal(zstack, stack)
    assert kd["scale"] == kc["scale"] == (0.3, 0.3)
    assert (kd["colormap"], kc["colormap"]) == ("blue", "magenta")
    assert kz["scale"] == (2.0, 0.7, 0.7)
    assert kz["units"] == ("micrometer",) * 3
    assert kz["colormap"] == "gray"

    data, info = open_tiff(path, series=1)
    assert info.series_name == "well B2"
    assert info.scale == (2.0, 0.7, 0.7)
    assert info.channel_names is None
    data, info = open_tiff(path)
    assert info.series_name == "well A1"
    assert info.channel_names == ("DAPI", "mCherry")


def _slide(path, names_shapes):
    with tifffile.TiffWriter(path) as tw:
        for name, shape in names_shapes:
            image = RNG.integers(0, 255, shape, dtype=np.uint8)
            photometric = "rgb" if shape[-1] == 3 else "minisblack"
            axes = "YXS" if shape[-1] == 3 else "YX"
            tw.write(image, photometric=photometric, metadata={"axes": axes, "Name": name})


def test_slide_label_and_macro_images_are_skipped(tmp_path):
    path = tmp_path / "scan.ome.tif"
    _slide(
        path,
        [
            ("tissue", (300, 400, 3)),
            ("label image", (40, 60, 3)),
            ("Macro", (80, 200, 3)),
            ("Thumbnail", (30, 40, 3)),
        ],
    )
    layers = read_tiff(path, series="all")
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["scan"]
    assert layers[0][0].shape == (300, 400, 3) and layers[0][1]["rgb"] is True
    # still readable when asked for
    ((macro, kwargs, _),) = read_tiff(path, series=2)
    assert macro.shape == (80, 200, 3)
    _, info = open_tiff(path, series=1)
    assert info.series_name == "label image"


def test_only_clearly_side_images_are_skipped(tmp_path):
    """A side-image name on a full-size image, or a small image with another name, is kept."""
    path = tmp_path / "mixed.ome.tif"
    _slide(path, [("overview", (120, 160)), ("Label", (120, 160)), ("detail", (20, 30))])
    layers = read_tiff(path, series="all")
    assert [kwargs["name"] for _, kwargs, _ in layers] == [
        "mixed [overview]",
        "mixed [Label]",
        "mixed [detail]",
    ]
    assert [d.shape for d, _, _ in layers] == [(120, 160), (120, 160), (20, 30)]


def test_napari_opens_every_series(two_ome_images, make_napari_viewer):
    path, _, stack = two_ome_images
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-sam2")
    assert [layer.name for layer in layers] == [
        "DAPI [well A1]",
        "mCherry [well A1]",
        "plate [well B2]",
    ]
    np.testing.assert_allclose(layers[2].scale, (2.0, 0.7, 0.7))
    assert layers[2].data.shape == stack.shape


_OME = """<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
<Image ID="Image:0" Name="a"><Pixels SizeX="10" SizeY="8" PhysicalSizeX="0.5"/></Image>
<Image ID="Image:1" Name="b"><Pixels SizeX="20" SizeY="16" PhysicalSizeX="0.25">
<Channel Name="GFP"/></Pixels></Image>
<Image ID="Image:2" Name="c"><Pixels SizeX="20" SizeY="16" PhysicalSizeX="2"/></Image>
</OME>"""


def test_parse_ome_picks_the_image_of_the_series():
    assert meta.parse_ome(_OME)["sizes"] == {"X": (0.5, "µm")}
    assert meta.parse_ome(_OME, 1)["channels"] == ["GFP"]
    # tifffile skipped an image: index 0 but the size says "b" or "c"; the name decides
    picked = meta.parse_ome(_OME, 0, name="c", size_yx=(16, 20))
    assert (picked["name"], picked["sizes"]) == ("c", {"X": (2.0, "µm")})
    picked = meta.parse_ome(_OME, 0, name="zzz", size_yx=(16, 20))
    assert picked["name"] == "b"
    # no image of that size: nothing rather than another image's pixel size
    assert meta.parse_ome(_OME, 0, size_yx=(5, 5))["sizes"] == {}


def test_lazy_reading_of_a_later_series(two_ome_images):
    import dask.array as da

    path, _, stack = two_ome_images
    data, info = open_tiff(path, series=1, lazy=True)
    assert isinstance(data, da.Array) and info.lazy
    assert data.shape == (4, 32, 40) and data.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(data[2]), stack[2])
    layers = read_tiff(path, series="all", lazy=True)
    assert all(isinstance(d, da.Array) for d, _, _ in layers)
    np.testing.assert_array_equal(np.asarray(layers[2][0][3]), stack[3])
