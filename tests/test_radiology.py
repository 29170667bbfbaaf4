"""A radiologist's first session on data nobody tuned for: a CT series in Hounsfield units
written with pydicom (shuffled files, reversed InstanceNumber, de-identified: no type 2
patient/study attributes), NIfTI CT with scl_slope/scl_inter, LAS anisotropic voxels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from napari_sam2.io.medical.dicom import read_dicom

ROWS, COLS, N = 32, 40, 10
BLOB = (10, 25)  # (row, column) of a soft-tissue disc on every slice


def write_ct_series(folder, n=N, step=2.5, order_seed=0):
    """A de-identified CT series: air -1024 HU, a +60+k HU disc on slice k, marker
    pixel (0, 0) = -1024 + k HU; files shuffled, InstanceNumber counting down."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[:ROWS, :COLS]
    order = np.random.default_rng(order_seed).permutation(n)
    for i, k in enumerate(order):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.Modality = "CT"
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series, study
        ds.FrameOfReferenceUID = frame
        ds.PatientName, ds.PatientID = "Anon", "0001"
        ds.SeriesDescription = "Chest CT"
        ds.InstanceNumber = int(n - k)
        ds.Rows, ds.Columns = ROWS, COLS
        ds.PixelSpacing = [0.7, 0.8]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-14.0, -12.0, -50.0 + step * float(k)]
        ds.SliceThickness = 5.0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        img = np.zeros((ROWS, COLS), np.int16)
        img[(yy - BLOB[0]) ** 2 + (xx - BLOB[1]) ** 2 < 25] = 1024 + 60 + k
        img[0, 0] = k
        ds.PixelData = img.tobytes()
        ds.save_as(folder / f"IM{i:04d}", enforce_file_format=True)
    return folder


def test_ct_series_sorted_by_position_in_hu(tmp_path):
    ((data, kwargs, _),) = read_dicom(write_ct_series(tmp_path / "ct"))
    assert data.shape == (N, ROWS, COLS) and data.dtype == np.int16
    assert list(data[:, 0, 0]) == [-1024 + k for k in range(N)]  # inferior → superior
    assert list(data[:, BLOB[0], BLOB[1]]) == [60 + k for k in range(N)]
    assert tuple(kwargs["scale"]) == (2.5, 0.7, 0.8)
    assert tuple(kwargs["translate"]) == (-50.0, -12.0, -14.0)
    assert kwargs["contrast_limits"] == [-160.0, 240.0]  # the file's W 400 / L 40


def test_dicom_seg_from_a_deidentified_series(tmp_path):
    """De-identified exports drop type 2 attributes (PatientBirthDate, StudyDate, ...): the
    SEG export used to crash with highdicom's AttributeError; now they are written empty."""
    pytest.importorskip("highdicom")
    from napari_sam2.io.medical.dicom_seg import save_labels_dicom_seg

    folder = write_ct_series(tmp_path / "ct")
    ((data, kwargs, _),) = read_dicom(folder)
    medical = kwargs["metadata"]["medical"]
    labels = np.zeros(data.shape, np.uint8)
    labels[6][data[6] > 0] = 3
    out = save_labels_dicom_seg(tmp_path / "seg.dcm", labels, medical=medical)
    seg = pydicom.dcmread(out)
    assert seg.PatientBirthDate == "" and seg.StudyDate == "" and seg.PatientID == "0001"
    frames = seg.pixel_array
    assert frames.dtype == np.uint8 and frames.ndim == 2  # one frame holds the mask
    (group,) = seg.PerFrameFunctionalGroupsSequence
    ref = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    sources = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in folder.iterdir()}
    source = sources[ref]
    assert float(source.ImagePositionPatient[2]) == -50.0 + 2.5 * 6
    pos = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
    assert pos == [float(v) for v in source.ImagePositionPatient]
    hu = source.pixel_array.astype(int) - 1024
    assert np.array_equal(frames.astype(bool), hu > 0)


def _nifti_ct(path, stored, slope=1.0, inter=-1024.0):
    affine = np.diag([-0.7, 0.7, 5.0, 1.0])  # LAS, anisotropic
    affine[:3, 3] = [20.0, -30.0, -100.0]
    img = nib.Nifti1Image(stored, affine)
    img.header.set_slope_inter(slope, inter)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, str(path))
    return path


def test_nifti_ct_in_hu_stays_integer_and_exact(tmp_path):
    from napari_sam2.io.medical.nifti import open_nifti

    stored = np.zeros((64, 48, 12), np.int16)  # -1024 HU air
    stored[30, 20, 5] = 1024 + 1000  # bone
    stored[31, 20, 5] = 1024 - 1000  # lung
    data, info = open_nifti(_nifti_ct(tmp_path / "ct.nii.gz", stored))
    assert data.dtype == np.int16  # nibabel alone gives float64 (4x the memory)
    assert data.shape == (12, 48, 64)
    assert data.min() == -1024 and data.max() == 1000
    # display (z, y, x) = (S, P, L): file i runs to the left, j runs anterior (flipped)
    assert data[5, 47 - 20, 30] == 1000 and data[5, 47 - 20, 31] == -1000
    assert info["transform"]["scale"] == pytest.approx((5.0, 0.7, 0.7))
    assert info["transform"]["translate"] == pytest.approx((-100.0, 30 - 0.7 * 47, -20.0))
    # a non-integer slope keeps floats; a range beyond int16 goes to int32
    half, _ = open_nifti(_nifti_ct(tmp_path / "half.nii", stored, slope=0.5, inter=0.0))
    assert half.dtype == np.float64 and half.max() == 1012.0
    wide, _ = open_nifti(_nifti_ct(tmp_path / "wide.nii", stored, slope=20.0))
    assert wide.dtype == np.int32 and wide.max() == 2024 * 20 - 1024
    unsigned = np.full((4, 4, 2), 40000, np.uint16)
    big, _ = open_nifti(_nifti_ct(tmp_path / "u16.nii", unsigned, inter=-32768.0))
    assert big.dtype == np.int32 and int(big.max()) == 40000 - 32768


def _pydicom_file(name):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom's test file {name} is not installed")
    return path


def test_rt_dose_grid_geometry_and_gray(tmp_path):
    """RT Dose: frames are GridFrameOffsetVector apart (5 mm here), not 1 pixel; values are
    pixel × DoseGridScaling in DoseUnits (they were shown as raw integers on a 1 mm grid)."""
    path = _pydicom_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    ((data, kwargs, _),) = read_dicom(path)
    assert data.shape == (15, 10, 10) and kwargs["axis_labels"] == ("z", "y", "x")
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert tuple(kwargs["scale"]) == pytest.approx((offsets[1] - offsets[0], 10.0, 10.0))
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    assert tuple(kwargs["translate"]) == pytest.approx((z, y, x))
    expected = ds.pixel_array * float(ds.DoseGridScaling)
    np.testing.assert_allclose(data, expected, rtol=1e-6)  # frame k at z + offsets[k]
    assert kwargs["metadata"]["medical"]["units"] == str(ds.DoseUnits)  # RELATIVE here


def test_undecodable_jpeg_names_another_decoder():
    """Pillow is installed but cannot read 12-bit JPEG: the message says what else to install."""
    from napari_sam2.io.errors import DicomReadError

    path = _pydicom_file("JPEG-lossy.dcm")
    try:
        import pylibjpeg  # noqa: F401

        pytest.skip("pylibjpeg is installed: the file decodes")
    except ImportError:
        pass
    with pytest.raises(DicomReadError, match="pylibjpeg") as info:
        read_dicom(path)
    assert "install" in str(info.value)


def test_malformed_header_is_a_typed_error_naming_the_file():
    from napari_sam2.io.errors import DicomReadError

    path = _pydicom_file("badVR.dcm")  # NumberOfFrames "1A"
    with pytest.raises(DicomReadError, match=r"badVR\.dcm: malformed DICOM header"):
        read_dicom(path)


def test_4d_labels_reopen_as_labels_with_the_source_tr(tmp_path):
    """Labels saved on a 4-D (time) NIfTI used to reopen as an *Image* with TR 1 and no
    time unit (napari then warns about inconsistent units and the t axis no longer lines up)."""
    from napari_sam2.io.medical.nifti import read_nifti
    from napari_sam2.io.medical.writer import save_labels_nifti

    stored = np.random.default_rng(0).integers(0, 100, (32, 24, 8, 5)).astype(np.int16)
    img = nib.Nifti1Image(stored, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_zooms((2.0, 2.0, 3.0, 2.5))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(tmp_path / "bold.nii.gz"))
    ((data, kwargs, kind),) = read_nifti(tmp_path / "bold.nii.gz")
    assert kind == "image" and data.shape == (5, 8, 24, 32)
    assert tuple(kwargs["scale"]) == (2.5, 3.0, 2.0, 2.0) and kwargs["units"][0] == "s"
    labels = np.zeros(data.shape, np.uint8)
    labels[3, 4, 10:14, 6:9] = 2
    out = save_labels_nifti(
        tmp_path / "seg.nii.gz",
        labels,
        medical=kwargs["metadata"]["medical"],
        provenance={"backend": "classical"},
    )
    back = nib.load(out)
    assert back.shape == stored.shape and back.header.get_zooms()[3] == 2.5
    assert back.header.get_xyzt_units() == ("mm", "sec")
    ((again, again_kwargs, again_kind),) = read_nifti(out)
    assert again_kind == "labels" and np.array_equal(again, labels)
    assert tuple(again_kwargs["scale"]) == tuple(kwargs["scale"])
    assert tuple(again_kwargs["units"]) == tuple(kwargs["units"])


def write_tilted_series(folder, tilt_deg=15.0, n=N, step=2.5):
    """A gantry-tilted CT: the rows tilt by ``tilt_deg`` about the x axis, the table steps
    2.5 mm along z: the slice positions do not lie on the slice normal (a sheared grid)."""
    write_ct_series(folder, n=n, step=step)
    t = np.deg2rad(tilt_deg)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(t)), float(-np.sin(t))]
        ds.ImagePositionPatient = [x, y + (z + 50.0) * np.tan(t), z]
        ds.save_as(path)
    return folder


def test_click_on_displayed_blob_of_a_gantry_tilted_ct(make_napari_viewer, tmp_path):
    """napari draws a sheared plane with the in-plane part of the transform only: a click on
    the disc it shows lands on the disc's voxel and plane (the full inverse put it 5 rows
    away on the neighbouring plane before the oblique-slicing fix merged from main)."""
    from napari_sam2.adapter.coords import current_plane, layer_to_image_data

    viewer = make_napari_viewer()
    (image,) = viewer.open(write_tilted_series(tmp_path / "tilt"), plugin="napari-sam2")
    z = 6
    viewer.dims.set_point(0, image.data_to_world((z, *BLOB))[0])
    assert current_plane(image, viewer.dims.point) == (z,)
    shown = image._data_to_world.set_slice([1, 2])  # how napari draws the plane
    click = np.array([viewer.dims.point[0], *shown(BLOB)])  # the user clicks the disc
    landed = layer_to_image_data(image, image.world_to_data(click), image)[0]
    assert np.allclose(landed, (z, *BLOB), atol=0.5), landed


def test_batch_on_a_study_folder_and_the_missing_slice_note(tmp_path):
    """A PACS study export (study/SE1/IM..., study/SE2/IM...: no DICOMDIR, no .dcm names)
    used to fail with "no file matches"; a missing slice, which misplaces the NIfTI
    labels after the gap, was a reader warning but no note in the batch summary."""
    from napari_sam2.batch import segment_files

    study = tmp_path / "study"
    write_ct_series(study / "SE1")
    write_ct_series(study / "SE2", order_seed=1)
    gap = next(p for p in (study / "SE2").iterdir() if pydicom.dcmread(p).InstanceNumber == 6)
    gap.unlink()  # slice k = 4 (InstanceNumber counts down)
    from napari_sam2.batch._prompts import from_lists

    prompts = from_lists(points=[BLOB], plane=(6,))
    s = segment_files(study, tmp_path / "out", prompts=prompts, backend="classical", series="all")
    assert [r.status for r in s.results] == ["done", "done"], s.lines()
    first, second = s.results
    assert not [n for n in first.notes if "missing" in n]
    assert any("1 missing slice" in n for n in second.notes), second.notes
    out = nib.load(second.output)
    assert out.shape == (COLS, ROWS, N - 1)
    saved = np.asanyarray(out.dataobj)
    assert saved[BLOB[1], BLOB[0], 6] == 1 and saved[:, :, 6].sum() == saved.sum()


def test_labels_on_an_image_without_patient_geometry_save_as_nifti(
    shared_data, tmp_path, make_napari_viewer
):
    """An ultrasound (or radiograph) has no ImagePositionPatient: saving its labels as NIfTI
    from napari used to fail with "needs the source's `medical` record or a world_affine"
    although the record was there; now it is written on the pixel grid, with a warning."""
    from napari_sam2.io import LabelsWriteError
    from napari_sam2.io.medical.writer import save_labels_nifti

    viewer = make_napari_viewer()
    (image,) = viewer.open(shared_data / "medical" / "US1_UNCR.dcm", plugin="napari-sam2")
    medical = image.metadata["medical"]
    assert medical.get("source_affine") is None and image.rgb
    labels = viewer.add_labels(np.zeros(image.data.shape[:2], np.uint8), scale=image.scale)
    labels.data[100:120, 200:240] = 2
    with pytest.warns(UserWarning, match="no patient geometry"):
        (written,) = labels.save(str(tmp_path / "us_seg.nii.gz"), plugin="napari-sam2")
    back = nib.load(written)
    saved = np.asanyarray(back.dataobj)
    assert saved.shape == (1, *labels.data.shape) and saved.dtype == np.uint8
    assert np.array_equal(saved[0], labels.data)
    with pytest.raises(LabelsWriteError, match="no patient geometry"):
        save_labels_nifti(tmp_path / "x.nii.gz", labels.data, medical=medical)


def test_seg_of_a_multiframe_without_frame_of_reference_is_a_clear_error(shared_data, tmp_path):
    pytest.importorskip("highdicom")
    from napari_sam2.io import LabelsWriteError
    from napari_sam2.io.medical.dicom_seg import save_labels_dicom_seg

    ((data, kwargs, _),) = read_dicom(shared_data / "medical" / "emri_small.dcm")
    labels = np.zeros(data.shape, np.uint8)
    labels[:, 2:6, 3:9] = 1
    with pytest.raises(LabelsWriteError, match="cannot write a DICOM SEG.*Frame of Reference"):
        save_labels_dicom_seg(tmp_path / "s.dcm", labels, medical=kwargs["metadata"]["medical"])
    assert not (tmp_path / "s.dcm").exists()
