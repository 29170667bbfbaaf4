"""DICOM reader on real files (pydicom / pydicom-data test files in tests/data/medical) and
on a series written with pydicom from a real volume (nibabel's anatomical.nii)."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.affines import apply_affine
from pydicom.uid import JPEGLSLossless, generate_uid

from napari_sam2.io.medical import _orient
from napari_sam2.io.medical.dicom import DicomReadError, DicomSeriesWarning, get_reader, read_dicom
from napari_sam2.io.medical.writer import save_labels_nifti

ROW_DIR = np.array([-1.0, 0.0, 0.0])  # columns run to the patient's right
COL_DIR = np.array([0.0, 1.0, 0.0])  # rows run posterior
NORMAL = np.cross(ROW_DIR, COL_DIR)  # (0, 0, -1): slice normal points down (feet)
SPACING, THICKNESS = 3.0, 5.0  # real slice step 3 mm, SliceThickness says 5
PIXEL = (1.5, 2.0)  # (between rows, between columns)
ORIGIN = np.array([100.0, -50.0, 20.0])
SLOPE, INTERCEPT = 0.25, -1024.0


def _volume(shared_data) -> np.ndarray:
    """The real MR volume as (slice, row, column) stored values."""
    anat = np.asanyarray(nib.load(shared_data / "medical/anatomical.nii").dataobj)
    return anat.transpose(2, 1, 0).astype(np.uint16)  # (25, 41, 33)


def _lps(k, r, c) -> np.ndarray:
    return ORIGIN + k * SPACING * NORMAL + c * PIXEL[1] * ROW_DIR + r * PIXEL[0] * COL_DIR


def write_series(shared_data, folder, skip=(), shift=None) -> np.ndarray:
    """Write the volume as a CT series (template: CT_small.dcm) with shuffled names and
    InstanceNumbers; slice k sits at ORIGIN + k * SPACING * NORMAL."""
    vol = _volume(shared_data)
    template = pydicom.dcmread(shared_data / "medical/CT_small.dcm")
    series_uid = generate_uid()
    rng = np.random.default_rng(7)
    names = rng.permutation(len(vol))
    folder.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(vol):
        if k in skip:
            continue
        ds = template.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = "Head 3mm"
        ds.InstanceNumber = int(names[k]) + 1  # deliberately not the slice order
        pos = _lps(k, 0, 0) + (shift if shift is not None and k == 5 else 0)
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.1f}" for v in (*ROW_DIR, *COL_DIR)]
        ds.PixelSpacing = [str(PIXEL[0]), str(PIXEL[1])]
        ds.SliceThickness = str(THICKNESS)
        ds.RescaleSlope, ds.RescaleIntercept = str(SLOPE), str(INTERCEPT)
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = plane.tobytes()
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.save_as(folder / f"IM{int(names[k]):04d}", enforce_file_format=True)
    return vol.astype(np.float64) * SLOPE + INTERCEPT


def test_series_order_spacing_and_hu(shared_data, tmp_path):
    hu = write_series(shared_data, tmp_path / "series")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DicomSeriesWarning)
        ((data, kwargs, kind),) = read_dicom(tmp_path / "series")
    assert kind == "image" and kwargs["name"] == "Head 3mm"
    # display (S, P, L): slice k=0 is the most superior -> last; columns run right -> flip x
    np.testing.assert_allclose(data, hu[::-1, :, ::-1])
    assert kwargs["scale"] == pytest.approx((SPACING, PIXEL[0], PIXEL[1]))  # not SliceThickness
    assert kwargs["metadata"]["medical"]["units"] == "HU"
    assert kwargs["contrast_limits"] == [-160.0, 240.0]  # the file's own window W400/L40


def test_clicked_voxel_maps_to_dicom_patient_position(shared_data, tmp_path, make_napari_viewer):
    hu = write_series(shared_data, tmp_path / "series")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "series", plugin="napari-sam2")
    rng = np.random.default_rng(3)
    for _ in range(20):
        disp = np.array([rng.integers(0, s) for s in layer.data.shape])
        lps = np.asarray(layer.data_to_world(disp))[::-1]  # world (S, P, L) -> (L, P, S)
        # the (k, r, c) pydicom's geometry puts at that LPS point
        k = np.dot(lps - ORIGIN, NORMAL) / SPACING
        c = np.dot(lps - ORIGIN, ROW_DIR) / PIXEL[1]
        r = np.dot(lps - ORIGIN, COL_DIR) / PIXEL[0]
        kcr = np.round([k, r, c]).astype(int)
        np.testing.assert_allclose([k, r, c], kcr, atol=1e-6)
        np.testing.assert_allclose(_lps(*kcr), lps, atol=1e-6)
        assert layer.data[tuple(disp)] == pytest.approx(hu[tuple(kcr)])


def test_series_labels_to_nifti_in_patient_space(shared_data, tmp_path):
    write_series(shared_data, tmp_path / "series")
    ((data, kwargs, _),) = read_dicom(tmp_path / "series")
    labels = np.zeros(data.shape, np.uint8)
    labels[3, 10, 20] = 1
    out = save_labels_nifti(tmp_path / "seg.nii.gz", labels, medical=kwargs["metadata"]["medical"])
    back = nib.load(out)
    (vox,) = np.argwhere(np.asanyarray(back.dataobj) == 1)
    ras = apply_affine(back.affine, vox)
    disp_world = _orient.RAS_TO_WORLD @ ras  # (S, P, L)
    expected = np.array(kwargs["translate"]) + np.array(kwargs["scale"]) * (3, 10, 20)
    np.testing.assert_allclose(disp_world, expected, atol=1e-3)
    assert back.shape == (33, 41, 25)  # (column, row, slice) like dcm2niix


def test_missing_slice_and_uneven_spacing_warn(shared_data, tmp_path):
    write_series(shared_data, tmp_path / "gap", skip=(10,))
    with pytest.warns(DicomSeriesWarning, match="1 missing slice"):
        ((data, _, _),) = read_dicom(tmp_path / "gap")
    assert data.shape[0] == 24
    write_series(shared_data, tmp_path / "uneven", shift=NORMAL * 0.9)
    with pytest.warns(DicomSeriesWarning, match="uneven slice spacing"):
        read_dicom(tmp_path / "uneven")


def test_ct_small_hounsfield_units(shared_data):
    path = shared_data / "medical/CT_small.dcm"
    ds = pydicom.dcmread(path)
    ((data, kwargs, _),) = read_dicom(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(data, expected)
    assert data.shape == (128, 128)  # one slice: a 2-D layer in the acquisition plane
    assert kwargs["scale"] == pytest.approx((0.661468, 0.661468))
    assert kwargs["metadata"]["medical"]["modality"] == "CT"


def test_no_patient_identifiers_unless_asked(shared_data):
    path = shared_data / "medical/CT_small.dcm"
    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) and str(ds.PatientID)
    ((_, kwargs, _),) = read_dicom(path)
    text = json.dumps(kwargs["metadata"]) + kwargs["name"]
    for tag in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID"):
        value = str(ds.get(tag, ""))
        if value:
            assert value not in text
    ((_, kwargs, _),) = read_dicom(path, include_identifiers=True)
    assert kwargs["metadata"]["medical"]["identifiers"]["PatientID"] == str(ds.PatientID)


def test_enhanced_ct_multiframe(shared_data):
    path = shared_data / "medical/eCT_Supplemental.dcm"
    ds = pydicom.dcmread(path)
    ((data, kwargs, _),) = read_dicom(path)
    assert data.shape == (2, 512, 512)
    assert kwargs["scale"][0] == pytest.approx(10.0)  # from the per-frame positions
    # frame 0 is at z = -159 (inferior) and rows run along -x (patient right): flip x
    frames = ds.pixel_array.astype(np.int32) - 1024
    np.testing.assert_array_equal(data[0], frames[0][:, ::-1])
    np.testing.assert_array_equal(data[1], frames[1][:, ::-1])
    assert kwargs["contrast_limits"] == [-2.0, 100.0]  # FrameVOILUT W102/L49
    assert kwargs["translate"][0] == pytest.approx(-159.0)


def test_multiframe_without_geometry_and_2d_modalities(shared_data):
    with pytest.warns(DicomSeriesWarning, match="InstanceNumber"):
        ((data, kwargs, _),) = read_dicom(shared_data / "medical/emri_small.dcm")
    assert data.shape == (10, 64, 64)
    np.testing.assert_array_equal(
        data, pydicom.dcmread(shared_data / "medical/emri_small.dcm").pixel_array
    )
    ((rgb, kwargs, _),) = read_dicom(shared_data / "medical/US1_UNCR.dcm")
    assert rgb.shape == (480, 640, 3) and kwargs["rgb"] is True


def test_dicomdir_one_layer_per_series(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomSeriesWarning)  # the test set drops slices
        layers = read_dicom(shared_data / "medical/dicomdir")
    names = [kw["name"] for _, kw, _ in layers]
    assert len(layers) == len(set(names))
    by_name = {kw["name"]: (data, kw) for data, kw, _ in layers}
    cr, cr_kw = by_name["Cervical LAT"]  # a radiograph: 2-D, mm, MONOCHROME1
    assert cr.shape == (16, 16) and cr_kw["units"] == ("mm", "mm")
    assert cr_kw["colormap"] == "gray_r"
    brain, brain_kw = by_name["Routine Brain"]
    assert brain.shape == (4, 16, 16) and brain_kw["axis_labels"] == ("z", "y", "x")


def test_compressed_without_decoder_names_what_to_install(shared_data, monkeypatch):
    from pydicom.pixels import get_decoder

    decoder = get_decoder(JPEGLSLossless)
    if decoder.is_available:  # e.g. pyjpegls came with highdicom: hide the installed plugins
        monkeypatch.setattr(decoder, "_available", {})
    assert not decoder.is_available
    with pytest.raises(DicomReadError, match="JPEG-LS.*no decoder.*pylibjpeg-libjpeg"):
        read_dicom(shared_data / "medical/MR_small_jpeg_ls_lossless.dcm")


def test_jpeg_ls_with_decoder_equals_uncompressed(shared_data):
    from pydicom.pixels import get_decoder

    if not get_decoder(JPEGLSLossless).is_available:
        pytest.skip("no JPEG-LS decoder installed here")
    ((a, _, _),) = read_dicom(shared_data / "medical/MR_small.dcm")
    ((b, _, _),) = read_dicom(shared_data / "medical/MR_small_jpeg_ls_lossless.dcm")
    np.testing.assert_array_equal(a, b)


def test_compressed_with_decoder_equals_uncompressed(shared_data):
    ((a, _, _),) = read_dicom(shared_data / "medical/MR_small.dcm")
    ((b, _, _),) = read_dicom(shared_data / "medical/MR_small_jp2klossless.dcm")
    np.testing.assert_array_equal(a, b)


def test_get_reader_declines_non_dicom(shared_data, tmp_path):
    (tmp_path / "notes.dcm").write_text("not dicom")
    (tmp_path / "tiffs").mkdir()
    (tmp_path / "tiffs" / "a.tif").write_bytes(
        (shared_data / "bacteria_phase_2d_uint8.tif").read_bytes()
    )
    assert get_reader(str(tmp_path / "notes.dcm")) is None
    assert get_reader(str(tmp_path / "tiffs")) is None
    store = tmp_path / "image.zarr" / "0"
    store.mkdir(parents=True)
    (store / ".zarray").write_text("{}")
    (store / "0.0").write_bytes(b"\0" * 200)
    assert get_reader(str(tmp_path / "image.zarr")) is None
    assert get_reader(str(shared_data / "bacteria_phase_2d_uint8.tif")) is None
    assert get_reader(str(shared_data / "medical/CT_small.dcm")) is not None
    assert get_reader(str(shared_data / "medical/dicomdir")) is not None
