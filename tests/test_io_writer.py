"""Tests for the labels writer, load_labels and provenance (napari_sam2.io)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_sam2
from napari_sam2.io.provenance import (
    PROVENANCE_SCHEMA,
    ProvenanceError,
    make_provenance,
    normalise_provenance,
    provenance_from_json,
    provenance_to_json,
)
from napari_sam2.io.tiff.reader import read_tiff
from napari_sam2.io.tiff.writer import LabelsWriteError, load_labels, save_labels, write_labels


def _provenance() -> dict:
    return make_provenance(
        backend="sam2-image",
        model_size="small",
        checkpoint_sha256="ab" * 32,
        device="cpu",
        normalisation={"method": "contrast_limits", "limits": [13.0, 253.0]},
        objects={
            1: {"points": [[16, 40, 52]], "point_labels": [1], "score": 0.93},
            7: {"box": [4, 10, 20, 30], "plane": [12]},
        },
    )


# -- round trips on real data ------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "labels", "target", "scale"),
    [
        (
            "ovule_membrane_zyx_uint8.tif",
            "ovule_membrane_zyx_uint8_labels.tif",
            "seg.tif",
            (0.235, 0.15, 0.15),
        ),
        (
            "em_fibsem_medulla_zyx_uint8.ome.tif",
            "em_fibsem_medulla_zyx_uint8_labels.tif",
            "seg.ome.tif",
            (0.01, 0.01, 0.01),
        ),
    ],
)
def test_round_trip_real_stack(shared_data, tmp_path, image, labels, target, scale):
    # read the image: scale, units and axes come from ImageJ / OME metadata
    ((img, img_kwargs, kind),) = read_tiff(shared_data / image)
    assert kind == "image"
    np.testing.assert_allclose(img_kwargs["scale"], scale, rtol=1e-6)
    assert img_kwargs["axis_labels"] == ("z", "y", "x")
    assert img_kwargs["units"] == ("micrometer",) * 3
    # the ground truth plays the segmentation, as a napari Labels layer would hold it
    segmentation = tifffile.imread(shared_data / labels).astype(np.int32)
    assert segmentation.shape == img.shape
    provenance = _provenance()
    attributes = {
        "name": "segmentation",
        "scale": list(img_kwargs["scale"]),
        "units": img_kwargs["units"],
        "axis_labels": img_kwargs["axis_labels"],
        "translate": [0.0, 0.0, 0.0],
        "metadata": {"napari_sam2": provenance},
    }
    written = write_labels(str(tmp_path / target), segmentation, attributes)
    assert written == [str(tmp_path / target)]
    # read back with our reader: a Labels layer, lined up with the image
    ((data, kwargs, kind),) = read_tiff(tmp_path / target)
    assert kind == "labels"
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data, segmentation)
    assert kwargs["scale"] == tuple(img_kwargs["scale"])
    assert kwargs["units"] == img_kwargs["units"]
    assert kwargs["axis_labels"] == ("z", "y", "x")
    assert kwargs["name"] == "segmentation"
    assert kwargs["metadata"]["napari_sam2"] == provenance
    assert kwargs["metadata"]["napari_sam2"]["objects"][7]["plane"] == [12]


def test_imagej_labels_are_calibrated_for_fiji(shared_data, tmp_path):
    labels = tifffile.imread(shared_data / "ovule_membrane_zyx_uint8_labels.tif")
    path = save_labels(tmp_path / "l.tif", labels, (0.235, 0.15, 0.15), "um", "ZYX")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "ZYX"
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        ij = tif.imagej_metadata
        assert ij["spacing"] == pytest.approx(0.235)
        assert ij["unit"] == "um"
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.15, rel=1e-6)
        assert json.loads(ij["Info"])["axes"] == "ZYX"


def test_ome_labels_have_physical_sizes(tmp_path):
    labels = np.zeros((4, 10, 12), np.uint8)
    labels[1, 2:5, 3:6] = 3
    path = save_labels(tmp_path / "l.ome.tif", labels, (2.0, 0.5, 0.25), "micrometer")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        xml = tif.ome_metadata
    assert 'PhysicalSizeX="0.25"' in xml and 'PhysicalSizeZ="2.0"' in xml
    assert 'PhysicalSizeXUnit="µm"' in xml
    assert 'Namespace="napari-sam2/labels"' in xml


def test_load_labels_of_foreign_file(shared_data):
    data, info = load_labels(shared_data / "nuclei3d_ovule_zyx_uint8_labels.tif")
    assert data.shape == (100, 100, 100) and data.dtype == np.uint16
    assert len(np.unique(data)) - 1 == 54
    assert info["axes"] == "ZYX"
    np.testing.assert_allclose(info["scale"], (0.283718, 0.126786, 0.126786), rtol=1e-5)
    assert info["provenance"] is None


# -- dtypes, axes, errors ------------------------------------------------------------


def test_uint16_when_ids_fit(tmp_path):
    labels = np.zeros((2, 8, 8), np.int64)
    labels[0, 0, 0] = 65535
    data, _ = load_labels(save_labels(tmp_path / "a.tif", labels))
    assert data.dtype == np.uint16 and data[0, 0, 0] == 65535


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif"])
def test_uint32_when_ids_exceed_uint16(tmp_path, suffix):
    labels = np.zeros((3, 8, 8), np.int64)
    labels[1, 2, 3] = 70_000
    labels[2, 4, 4] = 4_000_000_000
    with pytest.warns(UserWarning, match="exceed 65535") if suffix == ".tif" else _no_warn():
        path = save_labels(tmp_path / f"big{suffix}", labels, scale=(1.0, 0.5, 0.5), units="um")
    data, info = load_labels(path)
    assert data.dtype == np.uint32
    np.testing.assert_array_equal(data, labels)
    assert info["scale"] == (1.0, 0.5, 0.5)
    assert info["axes"] == "ZYX"


class _no_warn:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_translate_name_and_time_axis_round_trip(tmp_path):
    labels = np.zeros((5, 6, 7), np.uint16)
    labels[2, 1:3, 1:4] = 9
    path = save_labels(
        tmp_path / "t.tif",
        labels,
        scale=(30.0, 0.2, 0.2),
        units=("s", "um", "um"),
        axes=("t", "y", "x"),
        translate=(0.0, 10.5, -3.0),
        name="tracks",
    )
    ((data, kwargs, kind),) = read_tiff(path)
    assert kind == "labels"
    assert kwargs["axis_labels"] == ("t", "y", "x")
    assert kwargs["units"] == ("second", "micrometer", "micrometer")
    assert kwargs["translate"] == (0.0, 10.5, -3.0)
    assert kwargs["name"] == "tracks"
    assert "metadata" not in kwargs  # no provenance given, none invented by save_labels
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["finterval"] == 30.0


def test_napari_default_axis_labels_fall_back_to_zyx(tmp_path):
    attributes = {"axis_labels": ("-3", "-2", "-1"), "scale": [1, 1, 1], "metadata": {}}
    (path,) = write_labels(str(tmp_path / "d.tif"), np.ones((2, 3, 4), np.int32), attributes)
    _, info = load_labels(path)
    assert info["axes"] == "ZYX"
    # without provenance in the layer, the writer still records the plugin version
    assert info["provenance"]["plugin_version"] == napari_sam2.__version__


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.full((4, 4), -1, np.int32), "negative"),
        (np.zeros((4, 4), np.float32), "integer"),
    ],
)
def test_lossy_labels_are_refused(tmp_path, labels, message):
    with pytest.raises(LabelsWriteError, match=message):
        save_labels(tmp_path / "x.tif", labels)
    assert not (tmp_path / "x.tif").exists()


def test_bad_arguments(tmp_path):
    labels = np.zeros((3, 4, 5), np.uint16)
    with pytest.raises(ValueError, match="scale has 2 values"):
        save_labels(tmp_path / "x.tif", labels, scale=(1, 1))
    with pytest.raises(ValueError, match="distinct letters"):
        save_labels(tmp_path / "x.tif", labels, axes="ZZX")
    with pytest.raises(ValueError, match="positive"):
        save_labels(tmp_path / "x.tif", labels, scale=(0, 1, 1))


# -- provenance ------------------------------------------------------------------------


def test_make_provenance_fills_environment():
    prov = make_provenance(backend="classical")
    assert prov["schema"] == PROVENANCE_SCHEMA
    assert prov["plugin_version"] == napari_sam2.__version__
    assert prov["tifffile_version"] == tifffile.__version__
    assert prov["numpy_version"] == np.__version__
    assert prov["backend"] == "classical"
    assert prov["created"].endswith("+00:00")


def test_provenance_json_round_trip_keeps_int_object_ids():
    prov = make_provenance(
        objects={np.int64(3): {"points": np.array([[1, 2]]), "score": np.float32(0.5)}}
    )
    assert prov["objects"] == {3: {"points": [[1, 2]], "score": 0.5}}
    text = provenance_to_json(prov)
    assert '"3"' in text and text.isascii()
    assert provenance_from_json(text) == prov
    assert provenance_from_json(text.encode()) == prov


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"x": object()}, "not JSON-serialisable"),
        ({"x": float("nan")}, "not finite"),
        ({(1, 2): "tuple key"}, "must be a str or int"),
        ({"schema": "other/1"}, "unknown provenance schema"),
        ({"objects": [1, 2]}, "must map label IDs"),
        (["not", "a", "dict"], "must be a mapping"),
    ],
)
def test_invalid_provenance_is_refused(record, message):
    with pytest.raises(ProvenanceError, match=message):
        provenance_to_json(record)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"objects": {"cell": {}}}', "integer label IDs"),
        ('{"objects": {"0": {}}}', "non-positive"),
    ],
)
def test_invalid_provenance_json_is_refused(text, message):
    with pytest.raises(ProvenanceError, match=message):
        provenance_from_json(text)


def test_normalise_provenance_is_idempotent():
    prov = _provenance()
    assert normalise_provenance(prov) == prov


# -- through napari ---------------------------------------------------------------------


def test_napari_save_and_reopen_labels(shared_data, tmp_path, make_napari_viewer):
    from napari.layers import Labels

    viewer = make_napari_viewer()
    (image,) = viewer.open(shared_data / "ovule_membrane_zyx_uint8.tif", plugin="napari-sam2")
    segmentation = tifffile.imread(shared_data / "ovule_membrane_zyx_uint8_labels.tif")
    provenance = _provenance()
    layer = viewer.add_labels(
        segmentation.astype(np.int32),
        scale=image.scale,
        units=image.units,
        axis_labels=image.axis_labels,
        name="cells",
        metadata={"napari_sam2": provenance},
    )
    target = tmp_path / "cells.ome.tif"
    saved = layer.save(str(target), plugin="napari-sam2")
    assert [Path(p) for p in saved] == [target]
    viewer.layers.remove(layer)
    (reopened,) = viewer.open(target, plugin="napari-sam2")
    assert isinstance(reopened, Labels)
    assert reopened.name == "cells"
    np.testing.assert_array_equal(reopened.data, segmentation)
    np.testing.assert_allclose(reopened.scale, image.scale)
    assert reopened.metadata["napari_sam2"] == provenance
