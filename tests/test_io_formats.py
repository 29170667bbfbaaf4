"""io.formats: the one suffix → reader/writer registry, and io.dtypes: the labels dtype."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_sam2.io import LabelsWriteError, save_labels
from napari_sam2.io.dtypes import labels_dtype
from napari_sam2.io.errors import ImageReadError, TiffReadError, UnsupportedFormatError
from napari_sam2.io.formats import (
    image_kind,
    is_dicom,
    labels_kind,
    labels_output_suffix,
    labels_suffix,
    read_image,
    stem,
    suffix,
)
from napari_sam2.io.medical.writer import save_labels_nifti

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    "name, suf, base",
    [
        ("a.OME.TIF", ".ome.tif", "a"),
        ("b.nii.gz", ".nii.gz", "b"),
        ("c.tiff", ".tiff", "c"),
        ("d.dcm", ".dcm", "d"),
        ("e.png", ".png", "e"),
        ("f", "", "f"),
        ("g.v2.tif", ".tif", "g.v2"),
    ],
)
def test_suffix_and_stem(name, suf, base):
    assert suffix(Path("x") / name) == suf
    assert stem(Path("x") / name) == base


def test_labels_file_kind_and_suffix_by_name():
    assert [labels_kind(n) for n in ("a.nii", "a.NII.GZ", "a.dcm", "a.ome.tif", "a.tif")] == [
        "nifti", "nifti", "seg", "tiff", "tiff",
    ]  # fmt: skip
    assert [labels_suffix(n) for n in ("a.ome.tiff", "a.nii.gz", "a.dcm", "a")] == [
        ".ome.tiff", ".nii.gz", ".dcm", ".tif",
    ]  # fmt: skip


def test_image_kind_and_default_labels_name(tmp_path):
    tif = tmp_path / "cells.tif"
    tifffile.imwrite(tif, np.zeros((4, 5), np.uint8))
    disguised = tmp_path / "cells_no_suffix"
    disguised.write_bytes(tif.read_bytes())  # a TIFF is found by its header too
    nii = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.eye(4)), nii)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert [image_kind(p) for p in (tif, disguised, nii, other)] == [
        "tiff", "tiff", "nifti", None,
    ]  # fmt: skip
    assert labels_output_suffix(tif) == "_labels.tif"
    assert labels_output_suffix(nii) == "_labels.nii.gz"
    assert not is_dicom(tif) and not is_dicom(nii)


def test_read_image_of_each_kind(tmp_path):
    tif = tmp_path / "zyx.tif"
    tifffile.imwrite(tif, np.arange(60, dtype=np.uint16).reshape(2, 5, 6), metadata={"axes": "ZYX"})
    img = read_image(tif)
    assert img.axes == "ZYX" and img.data.shape == (2, 5, 6) and img.extra == {"reader": "tiff"}
    nii = tmp_path / "vol.nii.gz"
    vol = np.zeros((5, 6, 7), np.int16)
    vol[1, 2, 3] = 9
    nib.save(nib.Nifti1Image(vol, np.diag([0.5, 0.8, 2.0, 1.0])), nii)
    img = read_image(nii)
    assert img.extra["reader"] == "nifti" and img.axes == "ZYX"
    assert img.data.shape[0] == 7  # the 2 mm axis (superior) comes first in display order
    assert sorted(img.scale) == pytest.approx([0.5, 0.8, 2.0]) and img.units == ["mm"] * 3
    assert int(img.data.sum()) == 9 and img.extra["medical"]["source_shape"] == [5, 6, 7]


def test_unreadable_files_raise_typed_errors(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=r"notes.txt is not an image napari-sam2"):
        read_image(txt)
    bad_tif = tmp_path / "broken.tif"
    bad_tif.write_bytes(b"not a tiff at all")
    with pytest.raises(TiffReadError, match="broken.tif is not a TIFF file"):
        read_image(bad_tif)
    bad_nii = tmp_path / "broken.nii.gz"
    bad_nii.write_bytes(b"junk")
    with pytest.raises(ImageReadError, match="cannot read broken.nii.gz as NIfTI"):
        read_image(bad_nii)
    bad_dcm = tmp_path / "broken.dcm"
    bad_dcm.write_bytes(b"junk")
    with pytest.raises(ImageReadError, match="broken.dcm"):
        read_image(bad_dcm)
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        read_image(tmp_path / "missing.tif")
    assert issubclass(ImageReadError, ValueError)  # callers catching ValueError still do


@pytest.mark.parametrize(
    "values, tiff, nifti",
    [
        (np.array([[0, 1], [2, 3]], np.int64), "uint16", "uint8"),
        (np.array([[0, 300]], np.int32), "uint16", "uint16"),
        (np.array([[0, 70_000]], np.int64), "uint32", "uint32"),
        (np.array([[True, False]]), "uint16", "uint8"),
        (np.zeros((0, 3), np.int32), "uint16", "uint8"),
    ],
)
def test_labels_dtype_of_each_writer(values, tiff, nifti, tmp_path):
    """TIFF labels are at least 16-bit, NIfTI labels at least 8-bit: the files agree."""
    assert labels_dtype(values, smallest=np.uint16) == np.dtype(tiff)
    assert labels_dtype(values) == np.dtype(nifti)
    if values.size:
        tif = save_labels(tmp_path / "l.tif", values)
        assert tifffile.imread(tif).dtype == np.dtype(tiff)
        nii = save_labels_nifti(tmp_path / "l.nii", values[None], world_affine=np.eye(4))
        assert nib.load(nii).get_data_dtype() == np.dtype(nifti)


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([[0.5]]), "integer array, not float64"),
        (np.array([[-1, 2]]), r"negative IDs \(minimum -1\)"),
        (np.array([[2**33]], np.int64), "does not fit in uint32"),
    ],
)
def test_labels_dtype_refuses_what_would_be_lost(values, message):
    for smallest in (np.uint8, np.uint16):
        with pytest.raises(LabelsWriteError, match=message):
            labels_dtype(values, smallest=smallest)
