"""``napari_sam2.batch`` on NIfTI and DICOM inputs: NIfTI labels (or DICOM SEG) that overlay
the source scan voxel for voxel, written atomically and resumable.

Alignment is checked the way ITK-SNAP / 3D Slicer place the labels: every voxel of the
image as napari shows it goes to world (LPS) coordinates through the layer transform, then
to RAS, then through the written file's own affine to a voxel of the labels file, which must
hold the label the segmenter gave that displayed voxel.  For DICOM the world position is
also computed straight from the tags (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing), without our reader.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_sam2.batch import segment_files
from napari_sam2.batch._files import PARTIAL
from napari_sam2.batch._outputs import load_output, read_output_record
from napari_sam2.engine import Segmenter
from napari_sam2.io.medical.dicom import open_dicom
from napari_sam2.io.medical.nifti import open_nifti

pydicom = pytest.importorskip("pydicom")

MED = Path(__file__).resolve().parent / "data" / "medical"
CT_SERIES = MED / "dicomdir" / "98892001" / "CT5N"  # 5 slice files, no .dcm names


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DICOM geometry doubts of the tiny test series
        yield


def expected_labels(disp):
    """What --auto gives on the displayed image: the classical backend, every plane."""
    seg = Segmenter(backend="classical")
    seg.set_image(disp)
    return seg.segment_everything(None, "all" if disp.ndim > 2 else ())


def layer_matrix(tr: dict, nd: int) -> np.ndarray:
    """napari data → world: affine @ (scale, translate)."""
    m = np.eye(nd + 1)
    m[:nd, :nd] = np.diag(tr["scale"])
    if tr.get("translate") is not None:
        m[:nd, nd] = tr["translate"]
    if tr.get("affine") is not None:
        m = np.asarray(tr["affine"], float) @ m
    return m


def ras_of_world(world):
    """napari world (z, y, x) = LPS (S, P, L) → homogeneous RAS (R, A, S) = (-x, -y, z)."""
    z, y, x = world
    return np.vstack([-x, -y, z, np.ones(np.size(z))])


def voxels(affine, ras):
    return tuple(np.rint(np.linalg.inv(affine) @ ras)[:3].astype(int))


@pytest.mark.parametrize(
    "name", ["anatomical.nii", "reoriented_anat_moved.nii", "example4d.nii.gz"]
)  # LAS int16; RAS float; oblique 4-D
def test_nifti_labels_overlay_the_source(tmp_path, name):
    src_path = MED / name
    disp, info = open_nifti(src_path)
    expected = expected_labels(disp)
    s = segment_files(src_path, tmp_path / "out", auto=True, backend="classical")
    [r] = s.results
    assert r.status == "done", r.reason
    assert r.output == str(tmp_path / "out" / f"{name.split('.')[0]}_labels.nii.gz")
    out, src = nib.load(r.output), nib.load(src_path)
    np.testing.assert_allclose(out.affine, src.affine)  # the source's affine, not the display's
    assert out.shape == src.shape  # the source's voxel order
    assert out.get_data_dtype().kind == "u" and out.header.get_intent()[0] == "label"
    od, sd = np.asanyarray(out.dataobj), np.asanyarray(src.dataobj)
    nd = disp.ndim
    idx = np.array(np.nonzero(np.ones(disp.shape, bool)))  # every displayed voxel
    world = layer_matrix(info["transform"], nd) @ np.vstack([idx, np.ones(idx.shape[1])])
    ras = ras_of_world(world[nd - 3 : nd])
    t = (idx[0],) if nd == 4 else ()
    # the world position of a displayed voxel is that voxel in the source file ...
    np.testing.assert_array_equal(sd[voxels(src.affine, ras) + t], disp[tuple(idx)])
    # ... and holds its label in the written file
    labels_there = od[voxels(out.affine, ras) + t]
    np.testing.assert_array_equal(labels_there, expected[tuple(idx)])
    assert expected.max() >= 10 and set(np.unique(od)) - {0} == set(r.objects)
    back, prov = load_output(Path(r.output))
    np.testing.assert_array_equal(back, expected)
    assert prov["command"] == "napari-sam2 segment"
    np.testing.assert_allclose(prov["input"]["medical"]["source_affine"], src.affine)


def test_dicom_slice_labels_at_the_clicked_position(tmp_path):
    """CT_small.dcm: a point prompt; the labels file, placed by its affine, holds the object
    at the patient position of the clicked pixel, computed from the DICOM tags alone."""
    from napari_sam2.batch import PlanePrompts

    [(disp, _)] = open_dicom(MED / "CT_small.dcm")
    expected = expected_labels(disp)
    ids, areas = np.unique(expected[expected > 0], return_counts=True)
    big = ids[areas.argmax()]
    rr, cc = np.nonzero(expected == big)
    click = (int(rr[len(rr) // 2]), int(cc[len(cc) // 2]))
    pp = PlanePrompts()
    pp.add_point(click, 1)
    s = segment_files(MED / "CT_small.dcm", tmp_path, prompts={(): pp}, backend="classical")
    [r] = s.results
    assert r.status == "done" and r.output.endswith("CT_small_labels.nii.gz"), r.reason
    out = nib.load(r.output)
    od = np.asanyarray(out.dataobj)
    assert od.shape == (128, 128, 1)  # (column, row, slice), as dcm2niix writes a slice
    ds = pydicom.dcmread(MED / "CT_small.dcm")
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    dr, dc = (float(v) for v in ds.PixelSpacing)

    def ras_of_pixel(r, c):
        lps = ipp[:, None] + iop[:3, None] * (np.asarray(c) * dc) + iop[3:, None] * (
            np.asarray(r) * dr
        )  # fmt: skip
        return np.vstack([-lps[0], -lps[1], lps[2], np.ones(np.size(r))])

    assert od[voxels(out.affine, ras_of_pixel([click[0]], [click[1]]))] == 1
    written = load_output(Path(r.output))[0]
    assert written.shape == disp.shape and written[click] == 1
    rr, cc = np.nonzero(np.ones(disp.shape, bool))
    np.testing.assert_array_equal(od[voxels(out.affine, ras_of_pixel(rr, cc))], written[rr, cc])


def test_dicom_series_folder(tmp_path):
    """A series folder (files without .dcm names) is one input → one .nii.gz, and each
    slice file's pixel lands where its own ImagePositionPatient says."""
    [(disp, info)] = open_dicom(CT_SERIES)
    expected = expected_labels(disp)
    s = segment_files(CT_SERIES, tmp_path / "out", auto=True, backend="classical")
    [r] = s.results
    assert r.status == "done" and r.output == str(tmp_path / "out" / "CT5N_labels.nii.gz")
    out = nib.load(r.output)
    od = np.asanyarray(out.dataobj)
    assert od.shape == (16, 16, 5) and expected.max() >= 1
    m = layer_matrix(info, 3)
    for f in sorted(CT_SERIES.iterdir()):
        ds = pydicom.dcmread(f)
        ipp = np.array(ds.ImagePositionPatient, float)
        iop = np.array(ds.ImageOrientationPatient, float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        rr, cc = np.nonzero(np.ones((ds.Rows, ds.Columns), bool))
        lps = ipp[:, None] + iop[:3, None] * (cc * dc) + iop[3:, None] * (rr * dr)
        world = np.vstack([lps[2], lps[1], lps[0]])  # napari world (z, y, x) = (S, P, L)
        d = tuple(np.rint(np.linalg.inv(m) @ np.vstack([world, np.ones(rr.size)]))[:3].astype(int))
        hu = ds.pixel_array[rr, cc] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(disp[d], hu)  # the displayed voxel of that pixel
        np.testing.assert_array_equal(od[voxels(out.affine, ras_of_world(world))], expected[d])


def test_geometry_less_dicom_and_series_choice(tmp_path):
    """No patient geometry (RGB ultrasound, stripped enhanced MR): NIfTI on the pixel grid,
    with a note; reloading gives the labels the batch made."""
    s = segment_files([MED / "US1_UNCR.dcm", MED / "emri_small.dcm"], tmp_path, auto=True,
                      backend="classical")  # fmt: skip
    assert [r.status for r in s.results] == ["done", "done"], s.lines()
    for r, shape in zip(s.results, [(480, 640), (10, 64, 64)], strict=True):
        assert "pixel grid" in " ".join(r.notes)
        labels, prov = load_output(Path(r.output))
        assert labels.shape == shape and labels.max() == max(r.objects)
        assert prov["command"] == "napari-sam2 segment"
    bad = segment_files(MED / "MR_small.dcm", tmp_path / "x", auto=True, backend="classical",
                        series=3)  # fmt: skip
    assert bad.results[0].status == "failed" and "1 DICOM series" in bad.results[0].reason


def test_nifti_output_atomic_and_resumable(tmp_path, monkeypatch):
    """``.nii.gz`` outputs: hidden temporary name with the full suffix, complete ones are
    skipped, truncated/foreign ones and stale temporaries are redone, a crash leaves nothing."""
    from napari_sam2.io.medical import writer as medical_writer

    src = tmp_path / "in" / "head.nii"
    src.parent.mkdir()
    shutil.copy(MED / "anatomical.nii", src)
    out = tmp_path / "out"
    names = []
    real = medical_writer.save_labels_nifti

    def spy(path, *a, **kw):
        names.append(Path(path).name)
        return real(path, *a, **kw)

    monkeypatch.setattr(medical_writer, "save_labels_nifti", spy)
    s = segment_files(src.parent, out, auto=True, backend="classical")
    assert s.counts["done"] == 1
    [tmp_name] = names
    assert tmp_name.startswith(f".head_labels.nii.gz{PARTIAL}") and tmp_name.endswith(".nii.gz")
    target = out / "head_labels.nii.gz"
    assert sorted(p.name for p in out.iterdir()) == ["head_labels.nii.gz"]
    assert read_output_record(target)["batch"]["auto"] is True
    again = segment_files(src.parent, out, auto=True, backend="classical")
    assert again.counts == {"done": 0, "skipped": 1, "failed": 0}
    other = segment_files(src.parent, out, auto=True, backend="classical", planes="3")
    assert "--overwrite" in other.results[0].reason
    # truncated output and a stale temporary file of a killed run: redone, cleaned
    target.write_bytes(target.read_bytes()[:300])
    stale = out / f".head_labels.nii.gz{PARTIAL}999-abcdef.nii.gz"
    stale.write_bytes(b"left by a killed run")
    assert read_output_record(target) is None
    s = segment_files(src.parent, out, auto=True, backend="classical")
    assert s.counts["done"] == 1 and not stale.exists()
    # a write that dies half-way leaves neither the output nor its temporary file
    target.unlink()

    def half(path, *a, **kw):
        Path(path).write_bytes(b"\x1f\x8bhalf")
        raise OSError("disk full")

    monkeypatch.setattr(medical_writer, "save_labels_nifti", half)
    s = segment_files(src.parent, out, auto=True, backend="classical")
    assert s.results[0].reason == "disk full" and list(out.iterdir()) == []


def test_dicom_seg_option(tmp_path, capsys):
    pytest.importorskip("highdicom")
    from napari_sam2.cli import main

    args = ["segment", str(CT_SERIES), "--auto", "--backend", "classical", "--dicom-seg",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    seg_path = tmp_path / "CT5N_labels.dcm"
    ds = pydicom.dcmread(seg_path)
    assert ds.Modality == "SEG" and ds.SeriesDescription.startswith("napari-sam2 segment ")
    [(disp, _)] = open_dicom(CT_SERIES)
    n = int(expected_labels(disp).max())
    assert len(ds.SegmentSequence) == n
    assert list(tmp_path.iterdir()) == [seg_path]
    assert main(args) == 0
    assert "0 done, 1 skipped, 0 failed" in capsys.readouterr().out


def test_segment_layers_adds_nifti_labels_on_the_image(tmp_path):
    """From napari: a NIfTI opened by our reader; the labels layer added from the .nii.gz
    output is in the image's display orientation, with its transform."""
    from napari.components import ViewerModel
    from napari.layers._source import layer_source

    from napari_sam2.batch import segment_layers
    from napari_sam2.io.medical.nifti import read_nifti

    viewer = ViewerModel()
    path = MED / "reoriented_anat_moved.nii"
    [(data, kwargs, _)] = read_nifti(path)
    with layer_source(path=str(path)):
        image = viewer.add_image(data, **kwargs)
    s = segment_layers(viewer, tmp_path, auto=True, backend="classical")
    [layer] = s.layers
    np.testing.assert_array_equal(layer.data, expected_labels(data))
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    assert layer.metadata["napari_sam2"]["command"] == "napari-sam2 segment"


def test_one_image_form_reads_nifti_and_dicom(tmp_path, capsys):
    """``segment scan.nii -o seg.nii.gz`` (the one-image form) reads NIfTI and DICOM with the
    medical readers instead of failing with "not a TIFF file"; the output is NIfTI on the
    source's grid."""
    from napari_sam2.cli import main

    out = tmp_path / "anat_labels.nii.gz"
    args = ["segment", str(MED / "anatomical.nii"), "--plane", "12", "--points", "20,16",
            "--backend", "classical", "-o", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    src, lab = nib.load(str(MED / "anatomical.nii")), nib.load(str(out))
    assert lab.shape == src.shape
    np.testing.assert_allclose(lab.affine, src.affine)
    assert set(np.unique(np.asanyarray(lab.dataobj))) == {0, 1}
    out = tmp_path / "ct.nii.gz"
    args = ["segment", str(MED / "CT_small.dcm"), "--points", "64,64",
            "--backend", "classical", "-o", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert nib.load(str(out)).shape[:2] == (128, 128)
    png = tmp_path / "seg.png"
    args = ["segment", str(MED / "anatomical.nii"), "--plane", "12", "--points", "20,16",
            "--backend", "classical", "-o", str(png), "--no-progress"]  # fmt: skip
    assert main(args) == 2 and ".nii.gz" in capsys.readouterr().err
    assert not png.exists()
    args[2:4] = []  # no --plane on a volume: the reason gives an example
    assert main(args[:-3] + ["-o", str(tmp_path / "x.nii.gz"), "--no-progress"]) == 3
    assert "--plane 12" in capsys.readouterr().out


def test_dicom_seg_segments_file_names_the_segments(tmp_path, capsys):
    """``--segments FILE`` names and codes the SEG's segments; a bad code fails before any
    file is segmented, with a one-line error."""
    pytest.importorskip("highdicom")
    from napari_sam2.cli import main

    names = tmp_path / "names.csv"
    names.write_text("id,label,category,type\n1,Left lesion,Morphologically Altered Structure,"
                     "Neoplasm\n", encoding="utf-8")  # fmt: skip
    out = tmp_path / "out"
    args = ["segment", str(CT_SERIES), "--auto", "--backend", "classical", "--dicom-seg",
            "--segments", str(names), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    ds = pydicom.dcmread(out / "CT5N_labels.dcm")
    by_id = {s.TrackingID: s for s in ds.SegmentSequence}
    first = by_id["napari-sam2 label 1"]
    assert first.SegmentLabel == "Left lesion"
    assert first.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert first.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    others = [s.SegmentLabel for t, s in by_id.items() if t != "napari-sam2 label 1"]
    assert all(label.startswith("label ") for label in others)  # unnamed IDs keep the default
    names.write_text("id,label,type\n1,x,Not a SNOMED concept\n", encoding="utf-8")
    capsys.readouterr()
    assert main([*args[:-3], "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "Not a SNOMED concept" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
