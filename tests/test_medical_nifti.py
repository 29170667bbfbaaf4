"""NIfTI reader and writer on nibabel's real test volumes (tests/data/medical)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine

from napari_sam2.adapter.medical_writers import write_labels_nifti
from napari_sam2.io import LabelsWriteError
from napari_sam2.io.medical import _orient
from napari_sam2.io.medical.nifti import get_reader, open_nifti, read_nifti
from napari_sam2.io.medical.writer import save_labels_nifti

ANAT = "medical/anatomical.nii"  # LAS, 2 mm, int16 MR
MOVED = "medical/reoriented_anat_moved.nii"  # RAS, 4 mm, float32
OBLIQUE = "medical/example4d.nii.gz"  # oblique (rotated about x), 4-D


def _ras_of_world(world):
    """Our napari world (S, P, L) → RAS."""
    return np.linalg.solve(_orient.RAS_TO_WORLD, np.asarray(world, float)[-3:])


@pytest.mark.parametrize("name", [ANAT, MOVED, OBLIQUE])
def test_clicked_voxel_maps_to_nibabel_scanner_coordinate(shared_data, name, make_napari_viewer):
    path = shared_data / name
    img = nib.load(path)
    source = np.asanyarray(img.dataobj)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-sam2")
    rng = np.random.default_rng(1)
    for _ in range(20):
        disp = np.array([rng.integers(0, s) for s in layer.data.shape])
        ras = _ras_of_world(layer.data_to_world(disp))
        # the source voxel nibabel puts at that scanner position holds the same value
        src_vox = apply_affine(np.linalg.inv(img.affine), ras)
        np.testing.assert_allclose(src_vox, np.round(src_vox), atol=1e-4)
        index = tuple(np.round(src_vox).astype(int))
        if layer.data.ndim == 4:
            index += (int(disp[0]),)
        assert layer.data[tuple(disp)] == source[index]
        # and nibabel's scanner coordinate of that voxel is the napari world point
        np.testing.assert_allclose(apply_affine(img.affine, index[:3]), ras, atol=1e-4)


def test_display_orientation_is_radiological_axial(shared_data):
    # anatomical.nii is stored L-A-S: x flipped already; display (S, P, L) flips y only
    data, info = open_nifti(shared_data / ANAT)
    source = np.asanyarray(nib.load(shared_data / ANAT).dataobj)
    assert data.shape == (25, 41, 33)
    np.testing.assert_array_equal(data, source.transpose(2, 1, 0)[:, ::-1, :])
    assert info["axis_labels"] == ("z", "y", "x")
    assert info["units"] == ("mm", "mm", "mm")
    assert info["transform"]["scale"] == (2.0, 2.0, 2.0)
    assert "affine" not in info["transform"]  # axis-aligned: no rotation kept
    # first displayed voxel: the most inferior, posterior, patient-right corner
    corner = apply_affine(nib.load(shared_data / ANAT).affine, (0, 40, 0))  # RAS
    np.testing.assert_allclose(
        info["transform"]["translate"], _orient.RAS_TO_WORLD @ corner, atol=1e-6
    )


def test_oblique_4d_keeps_rotation_and_time_axis(shared_data):
    data, info = open_nifti(shared_data / OBLIQUE)
    assert data.shape == (2, 24, 96, 128)
    assert info["axis_labels"] == ("t", "z", "y", "x")
    assert info["units"][0] == "s" and info["units"][1:] == ("mm",) * 3
    affine = info["transform"]["affine"]
    rotation = affine[1:4, 1:4]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
    assert abs(rotation[0, 1]) > 0.1  # the real obliquity (~9°) stays, no resampling
    assert info["medical"]["source_shape"] == [128, 96, 24, 2]


@pytest.mark.parametrize("name", [ANAT, MOVED, OBLIQUE])
def test_labels_round_trip_source_affine_voxel_for_voxel(shared_data, tmp_path, name):
    ((data, kwargs, _),) = read_nifti(shared_data / name)
    source_img = nib.load(shared_data / name)
    source = np.asanyarray(source_img.dataobj)
    threshold = np.percentile(data, 80)
    labels = np.zeros(data.shape, np.uint16)
    labels[data > threshold] = 7
    labels[tuple(s // 2 for s in data.shape)] = 300  # one voxel of a second object
    prov = {"backend": "classical", "objects": {7: {"points": [[3, 4]]}}}
    out = save_labels_nifti(
        tmp_path / "seg.nii.gz", labels, medical=kwargs["metadata"]["medical"], provenance=prov
    )
    back = nib.load(out)  # plain nibabel, no napari-sam2
    assert np.array_equal(back.affine, source_img.affine)
    assert back.shape == source.shape
    assert back.get_data_dtype() == np.uint16
    expected = np.where(source > threshold, 7, 0)
    got = np.asanyarray(back.dataobj)
    assert int((got == 300).sum()) == 1
    np.testing.assert_array_equal(np.where(got == 300, expected, got), expected)
    assert back.header.get_intent()[0] == "label"
    (ext,) = [e for e in back.header.extensions if e.get_code() == 6]
    assert json.loads(ext.get_content())["objects"]["7"]["points"] == [[3, 4]]


def test_written_labels_reopen_as_labels_with_provenance(shared_data, tmp_path):
    ((data, kwargs, _),) = read_nifti(shared_data / ANAT)
    labels = (data > np.percentile(data, 90)).astype(np.uint8)
    out = save_labels_nifti(
        tmp_path / "anat.nii.gz",
        labels,
        medical=kwargs["metadata"]["medical"],
        provenance={"objects": {1: {"points": [[1, 2]]}}},
    )
    ((back, back_kwargs, kind),) = read_nifti(out)
    assert kind == "labels"
    np.testing.assert_array_equal(back, labels)
    assert back_kwargs["metadata"]["napari_sam2"]["objects"] == {1: {"points": [[1, 2]]}}
    assert back_kwargs["scale"] == kwargs["scale"]
    assert back_kwargs["translate"] == kwargs["translate"]


def test_napari_writer_finds_source_of_new_labels(shared_data, tmp_path, make_napari_viewer):
    from napari_sam2.adapter.layers import new_labels_layer

    viewer = make_napari_viewer()
    (image,) = viewer.open(shared_data / OBLIQUE, plugin="napari-sam2")
    labels = new_labels_layer(viewer, image)  # what the widget's "New labels" makes
    labels.data[1, 12, 40:50, 60:70] = 5
    assert "medical" not in labels.metadata
    (written,) = labels.save(str(tmp_path / "seg.nii.gz"), plugin="napari-sam2")
    back = nib.load(written)
    source = nib.load(shared_data / OBLIQUE)
    assert np.array_equal(back.affine, source.affine)
    assert back.shape == source.shape
    got = np.asanyarray(back.dataobj)
    assert int((got == 5).sum()) == 100
    # every labelled voxel sits where the display voxel was, in scanner space
    for vox in np.argwhere(got == 5)[:10]:
        disp = np.round(
            labels.world_to_data(_orient.RAS_TO_WORLD @ apply_affine(source.affine, vox[:3]))
        )
        assert labels.data[(int(vox[3]), *disp[1:].astype(int))] == 5


def test_writer_without_source_keeps_world_alignment(tmp_path):
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 2, 3] = 1
    attributes = {"scale": (3.0, 2.0, 1.0), "translate": (10.0, 20.0, 30.0), "metadata": {}}
    with pytest.warns(UserWarning, match="source scan is unknown"):
        (written,) = write_labels_nifti(str(tmp_path / "x.nii"), labels, attributes)
    back = nib.load(written)
    world = np.array([10 + 3 * 1, 20 + 2 * 2, 30 + 1 * 3])  # (S, P, L)
    ras = apply_affine(back.affine, (1, 2, 3))
    np.testing.assert_allclose(_orient.RAS_TO_WORLD @ ras, world)


def test_writer_rejects_bad_labels(shared_data, tmp_path):
    ((data, kwargs, _),) = read_nifti(shared_data / ANAT)
    medical = kwargs["metadata"]["medical"]
    with pytest.raises(LabelsWriteError, match="integer"):
        save_labels_nifti(tmp_path / "a.nii", data.astype(float), medical=medical)
    with pytest.raises(LabelsWriteError, match="do not match"):
        save_labels_nifti(tmp_path / "a.nii", np.zeros((3, 4, 5), np.uint8), medical=medical)
    with pytest.raises(LabelsWriteError, match="negative"):
        save_labels_nifti(tmp_path / "a.nii", -np.ones(data.shape, np.int16), medical=medical)


def test_get_reader_declines_non_nifti(shared_data, tmp_path):
    assert get_reader(str(shared_data / "nuclei2d_dsb2018_uint16.tif")) is None
    assert get_reader(str(tmp_path / "missing.nii")) is None
    assert get_reader([str(shared_data / ANAT)]) is None
    assert get_reader(str(shared_data / ANAT)) is not None


def test_4d_labels_reopen_as_labels_with_the_time_step(shared_data, tmp_path):
    """A new user's round trip on the oblique EPI series: labels drawn on (t, z, y, x)
    saved with the napari writer came back as an *Image* with a time step of 1 instead of
    the scan's 2000 (the header's time zoom and units were dropped)."""
    ((data, kwargs, _),) = read_nifti(shared_data / OBLIQUE)
    src = nib.load(shared_data / OBLIQUE)
    labels = np.zeros(data.shape, np.uint16)
    labels[1, 14, 40:50, 60:70] = 3
    out = save_labels_nifti(
        tmp_path / "epi_objects.nii.gz",
        labels,
        medical=kwargs["metadata"]["medical"],
        provenance={"objects": {3: {"points": [[1, 14, 45, 65]]}}},
    )
    back_img = nib.load(out)
    assert back_img.header.get_zooms() == src.header.get_zooms()
    assert back_img.header.get_xyzt_units() == src.header.get_xyzt_units()
    np.testing.assert_allclose(back_img.affine, src.affine)
    ((back, back_kwargs, kind),) = read_nifti(out)
    assert kind == "labels"
    np.testing.assert_array_equal(back, labels)
    assert back_kwargs["axis_labels"] == ("t", "z", "y", "x")
    np.testing.assert_allclose(back_kwargs["scale"], kwargs["scale"])
    assert back_kwargs["units"] == kwargs["units"]
    assert back_kwargs["metadata"]["napari_sam2"]["objects"][3]["points"] == [[1, 14, 45, 65]]
