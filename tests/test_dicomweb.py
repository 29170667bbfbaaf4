"""DICOMweb against a real, private Orthanc server (tests/_orthanc.py): search, open a
series (equal to its folder), send a DICOM SEG back (exact voxels, read back over
WADO-RS), credentials, a server that goes away, a 500-slice series with Cancel."""

from __future__ import annotations

import threading
import tracemalloc
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from _orthanc import PASSWORD, USER, start_orthanc
from napari_sam2.io import dicomweb
from napari_sam2.io.medical.dicom import DicomSeriesWarning, read_dicom
from test_medical_dicom import COL_DIR, NORMAL, PIXEL, ROW_DIR, SPACING, _lps, write_series

AUTH = {"username": USER, "password": PASSWORD}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def _upload_series(server, folder, shared_data, **kwargs):
    hu = write_series(shared_data, folder, **kwargs)
    study = generate_uid()  # each test its own study (the template's is shared)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.save_as(path)
    server.upload(sorted(folder.iterdir()))
    series_uid = str(
        pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID
    )
    return hu, series_uid


def _find(server, series_uid):
    (found,) = [
        s for s in dicomweb.search_series(server.url, **AUTH) if s["series_uid"] == series_uid
    ]
    return found


def test_series_over_dicomweb_equals_its_folder(orthanc, shared_data, tmp_path):
    hu, series_uid = _upload_series(orthanc, tmp_path / "series", shared_data, skip=(12,))
    summary = _find(orthanc, series_uid)
    assert summary["instances"] == 24 and summary["modality"] == "CT"
    assert summary["description"] == "Head 3mm" and "PixelData" not in str(summary)
    by_description = dicomweb.search_series(
        orthanc.url, description="head 3", modality="CT", **AUTH
    )
    assert series_uid in [s["series_uid"] for s in by_description]
    assert dicomweb.search_series(orthanc.url, modality="MR", description="head 3", **AUTH) == []

    progress = []
    with warnings.catch_warnings(record=True) as over_web:
        warnings.simplefilter("always", DicomSeriesWarning)
        ((data, kwargs, kind),) = dicomweb.open_series(
            orthanc.url,
            summary["study_uid"],
            series_uid,
            progress=lambda done, total: progress.append((done, total)),
            **AUTH,
        )
    with warnings.catch_warnings(record=True) as from_folder:
        warnings.simplefilter("always", DicomSeriesWarning)
        ((ref, ref_kwargs, _),) = read_dicom(tmp_path / "series")
    assert kind == "image" and progress[-1] == (24, 24) and len(progress) == 24
    np.testing.assert_array_equal(data, ref)
    assert data.dtype == ref.dtype
    np.testing.assert_allclose(data[-1], hu[0][:, ::-1])  # HU; slice 0 is the top one
    for key in ("scale", "translate", "contrast_limits", "units", "axis_labels", "name"):
        assert kwargs[key] == ref_kwargs[key], key
    assert kwargs.get("affine") is None and ref_kwargs.get("affine") is None
    medical, ref_medical = kwargs["metadata"]["medical"], ref_kwargs["metadata"]["medical"]
    for key in ("units", "windows", "source_affine", "display_ornt", "modality", "frames"):
        assert medical[key] == ref_medical[key], key
    assert medical["dicomweb"] == {
        "url": orthanc.url,
        "study": summary["study_uid"],
        "series": series_uid,
    }
    assert PASSWORD not in repr(kwargs) and "identifiers" not in medical
    # the missing slice gives the same geometry warning as from the folder
    assert [str(w.message) for w in over_web] == [str(w.message) for w in from_folder]
    assert any("missing" in str(w.message) or "gap" in str(w.message) for w in over_web)


def _seg_frames(server, study, seg_uid):
    """The stored SEG, read back over WADO-RS by highdicom."""
    import highdicom as hd

    client = dicomweb.make_client(server.url, **AUTH)
    found = client.search_for_instances(study, search_filters={"SOPInstanceUID": seg_uid})
    series = found[0]["0020000E"]["Value"][0]
    return hd.seg.Segmentation.from_dataset(client.retrieve_instance(study, series, seg_uid))


def test_seg_sent_with_stow_lands_on_the_same_voxels(orthanc, shared_data, tmp_path):
    pytest.importorskip("highdicom")
    _, series_uid = _upload_series(orthanc, tmp_path / "series", shared_data)
    study = _find(orthanc, series_uid)["study_uid"]
    ((data, kwargs, _),) = dicomweb.open_series(orthanc.url, study, series_uid, **AUTH)
    labels = np.zeros(data.shape, np.int32)
    labels[4:9, 10:20, 5:15] = 3
    labels[20, 30:33, 25:30] = 7
    medical = kwargs["metadata"]["medical"]
    seg_uid = dicomweb.send_seg(orthanc.url, labels, medical=medical, **AUTH)
    seg = _seg_frames(orthanc, study, seg_uid)

    assert seg.StudyInstanceUID == study
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    source = pydicom.dcmread(next((tmp_path / "series").iterdir()), stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert [d.segment_label for d in map(seg.get_segment_description, (1, 2))] == [
        "label 3",
        "label 7",
    ]
    # every labelled voxel, through the SEG's own plane positions, sits at the world point
    # napari shows the label at
    scale, translate = np.asarray(kwargs["scale"]), np.asarray(kwargs["translate"])
    seen, seg_lps = {}, {}
    for frame_no, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        rows, cols = np.nonzero(
            seg.pixel_array[frame_no] if seg.pixel_array.ndim == 3 else seg.pixel_array
        )
        lps = position + rows[:, None] * PIXEL[0] * COL_DIR + cols[:, None] * PIXEL[1] * ROW_DIR
        world = lps[:, [2, 1, 0]]  # napari world (z, y, x) = LPS (S, P, L)
        voxels = np.rint((world - translate) / scale).astype(int)
        assert np.allclose(voxels * scale + translate, world, atol=1e-3)
        for v, point in zip(map(tuple, voxels), lps, strict=True):
            seen[v] = {1: 3, 2: 7}[segment]
            seg_lps[tuple(np.round(point, 2))] = seen[v]
    expected = {tuple(v): int(labels[tuple(v)]) for v in np.argwhere(labels)}
    assert seen == expected
    # nibabel's world coordinates of the same labels written as NIfTI (the source affine)
    # name the same patient points as the SEG's frames
    import nibabel as nib

    from napari_sam2.io.medical.writer import save_labels_nifti

    nii = nib.load(save_labels_nifti(tmp_path / "labels.nii.gz", labels, medical=medical))
    values = np.asanyarray(nii.dataobj)
    ijk = np.argwhere(values)
    ras = nib.affines.apply_affine(nii.affine, ijk)
    lps_points = np.round(ras * [-1, -1, 1], 2)
    nifti_lps = {tuple(p): int(values[tuple(v)]) for p, v in zip(lps_points, ijk, strict=True)}
    assert nifti_lps == seg_lps and len(seg_lps) == np.count_nonzero(labels)
    # highdicom's own reading by source instance gives the same masks
    uids = medical["source_files"]
    masks = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False)
    assert masks.shape[0] == len(uids) == data.shape[0]
    source_order = labels[::-1, :, ::-1]  # display (S, P, L) → slice k, row, column
    lut = np.array([0, 0, 0, 1, 0, 0, 0, 2])
    np.testing.assert_array_equal(masks, lut[source_order])
    assert np.isclose(np.dot(_lps(1, 0, 0) - _lps(0, 0, 0), NORMAL), SPACING)


def test_repeated_send_makes_a_new_seg_series(orthanc, shared_data, tmp_path):
    pytest.importorskip("highdicom")
    _, series_uid = _upload_series(orthanc, tmp_path / "series", shared_data)
    study = _find(orthanc, series_uid)["study_uid"]
    ((data, kwargs, _),) = dicomweb.open_series(orthanc.url, study, series_uid, **AUTH)
    labels = np.zeros(data.shape, np.int32)
    labels[3, 5:9, 5:9] = 1
    medical = kwargs["metadata"]["medical"]
    first = dicomweb.send_seg(orthanc.url, labels, medical=medical, **AUTH)
    second = dicomweb.send_seg(orthanc.url, labels, medical=medical, **AUTH)
    assert first != second
    segs = dicomweb.search_series(orthanc.url, study_uid=study, modality="SEG", **AUTH)
    numbers = sorted(s["series_number"] for s in segs)
    assert len(segs) == 2 and len({s["series_uid"] for s in segs}) == 2
    assert numbers == [9000, 9001] and all(s["instances"] == 1 for s in segs)


def test_wrong_password_is_a_typed_error_without_the_password(orthanc, shared_data, tmp_path):
    _, series_uid = _upload_series(orthanc, tmp_path / "series", shared_data)
    study = _find(orthanc, series_uid)["study_uid"]
    wrong = {"username": USER, "password": "not-the-password-123"}
    with pytest.raises(dicomweb.DicomWebAuthError, match="HTTP 401") as err:
        dicomweb.search_series(orthanc.url, **wrong)
    assert "not-the-password-123" not in str(err.value)
    with pytest.raises(dicomweb.DicomWebAuthError):
        dicomweb.open_series(orthanc.url, study, series_uid, **wrong)
    with pytest.raises(dicomweb.DicomWebAuthError):
        dicomweb.search_series(orthanc.url)  # no credentials at all


def test_server_stopped_mid_retrieval_is_a_typed_error_and_nothing_opens(shared_data, tmp_path):
    server = start_orthanc(tmp_path / "orthanc")
    try:
        _, series_uid = _upload_series(server, tmp_path / "series", shared_data)
        study = _find(server, series_uid)["study_uid"]
        seen = []

        def stop_at_five(done, total):
            seen.append(done)
            if done == 5:
                server.stop(grace=2)  # returns once the process has exited

        with pytest.raises(dicomweb.DicomWebConnectionError, match="went away"):
            dicomweb.open_series(
                server.url,
                study,
                series_uid,
                progress=stop_at_five,
                save_to=tmp_path / "copy",
                **AUTH,
            )
        assert 5 <= max(seen) < 25
        assert not (tmp_path / "copy").exists()  # nothing half-written either
    finally:
        server.stop()


def _tiny_series(n, rows=64, cols=64):
    """n synthetic CT slices (encoded, ready to upload) and their stored values."""
    template = pydicom.dcmread(Path(__file__).parent / "data/medical/CT_small.dcm")
    series, rng = generate_uid(), np.random.default_rng(3)
    values = rng.integers(0, 2000, (n, rows, cols), dtype=np.uint16)
    for k in range(n):
        ds = template.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID, ds.SeriesDescription = series, "tiny 500"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, -1.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = values[k].tobytes()
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        yield buffer.getvalue()


def test_500_slices_with_bounded_memory_and_a_working_cancel(orthanc, tmp_path):
    n = 500
    blobs = list(_tiny_series(n))
    orthanc.upload_bytes(blobs)
    (summary,) = dicomweb.search_series(orthanc.url, description="tiny 500", **AUTH)
    assert summary["instances"] == n
    study, series = summary["study_uid"], summary["series_uid"]
    folder = tmp_path / "tiny"
    folder.mkdir()
    for k, blob in enumerate(blobs):
        (folder / f"IM{k:04d}").write_bytes(blob)
    del blobs

    def peak_of(read):
        tracemalloc.start()
        try:
            return read(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    ((ref, _, _),), folder_peak = peak_of(lambda: read_dicom(folder))
    ((data, kwargs, _),), peak = peak_of(
        lambda: dicomweb.open_series(orthanc.url, study, series, **AUTH)
    )
    np.testing.assert_array_equal(data, ref)
    assert data.shape == (n, 64, 64) and kwargs["scale"] == pytest.approx((1.0, 1.0, 1.0))
    # in memory, about what reading the folder costs (headers + pixels + volume), not the
    # series metadata or a whole multipart response on top of it
    assert peak < 1.5 * folder_peak, (peak, folder_peak)

    cancel, done = threading.Event(), []

    def cancel_at_50(k, total):
        done.append(k)
        if k == 50:
            cancel.set()

    with pytest.raises(dicomweb.DicomWebCancelled):
        dicomweb.open_series(
            orthanc.url, study, series, cancel=cancel, progress=cancel_at_50, workers=4, **AUTH
        )
    assert 50 <= max(done) <= 50 + 4  # what was in flight finishes, nothing more starts


def test_refusal_names_the_servers_reason_and_keeps_a_local_copy(shared_data, tmp_path):
    pytest.importorskip("highdicom")
    script = tmp_path / "refuse_seg.lua"
    script.write_text(
        "function ReceivedInstanceFilter(dicom, origin, info)\n"
        "  return dicom.Modality ~= 'SEG'\nend\n",
        encoding="utf-8",
    )
    server = start_orthanc(tmp_path / "orthanc", extra={"LuaScripts": [str(script)]})
    try:
        _, series_uid = _upload_series(server, tmp_path / "series", shared_data)
        study = _find(server, series_uid)["study_uid"]
        ((data, kwargs, _),) = dicomweb.open_series(server.url, study, series_uid, **AUTH)
        labels = np.zeros(data.shape, np.int32)
        labels[2, 4:8, 4:8] = 5
        medical = kwargs["metadata"]["medical"]
        with pytest.raises(dicomweb.DicomWebRefusedError, match="does not hold the SEG") as err:
            dicomweb.send_seg(server.url, labels, medical=medical, **AUTH)
        assert "dropped" in err.value.reason and err.value.seg.Modality == "SEG"
        assert dicomweb.search_series(server.url, modality="SEG", **AUTH) == []
        local = dicomweb.save_seg(
            tmp_path / "out" / "seg.dcm", server.url, labels, medical=medical, **AUTH
        )
        saved = pydicom.dcmread(local)
        assert (
            saved.Modality == "SEG"
            and saved.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
        )
    finally:
        server.stop()


def test_addresses_and_secrets(tmp_path, monkeypatch):
    address = dicomweb.parse_address("dicomweb+http://pacs:8042/dicom-web/studies/1.2/series/3.4")
    assert address == dicomweb.Address("http://pacs:8042/dicom-web", "1.2", "3.4")
    assert (
        dicomweb.parse_address("dicomweb://pacs.example/wado").url == "https://pacs.example/wado"
    )
    with pytest.raises(ValueError, match="credentials"):
        dicomweb.parse_address("https://user:pw@pacs/dicom-web")
    with pytest.raises(ValueError, match="not a DICOMweb address"):
        dicomweb.parse_address("ftp://pacs/x")
    (tmp_path / "token").write_text("abc.def\n", encoding="utf-8")
    assert dicomweb.read_secret(file=tmp_path / "token") == "abc.def"
    monkeypatch.setenv(dicomweb.TOKEN_ENV, "xyz")
    assert dicomweb.read_secret(env=dicomweb.TOKEN_ENV) == "xyz"
    client = dicomweb.make_client("https://pacs.example/dicom-web", token="abc.def")
    import requests

    prepared = client._session.prepare_request(requests.Request("GET", "https://pacs.example/x"))
    assert prepared.headers["Authorization"] == "Bearer abc.def"
    assert "abc.def" not in repr(client._session.auth)
    assert client._session.verify is True
    bundle = tmp_path / "ca.pem"
    assert dicomweb.make_client("https://p/x", ca_bundle=bundle)._session.verify == str(bundle)


# the body of Orthanc 1.10's HTTP 409 reply to a STOW-RS into the wrong study
ORTHANC_409 = (
    '{"00080005": {"Value": ["ISO_IR 100"], "vr": "CS"}, "00081198": {"Value": [{'
    '"00081150": {"Value": ["1.2.840.10008.5.1.4.1.1.2"], "vr": "UI"}, '
    '"00081155": {"Value": ["1.2.3"], "vr": "UI"}, "00081197": {"Value": [272], "vr": "US"}'
    '}], "vr": "SQ"}, "00081199": {"vr": "SQ"}}'
)


def test_stow_failure_reasons_are_named():
    from napari_sam2.io._dicomweb_transfer import failure_reasons

    assert failure_reasons(ORTHANC_409) == ["0x0110 processing failure"]
    assert failure_reasons("<html>busy</html>") == []
    reply = pydicom.Dataset()
    item = pydicom.Dataset()
    item.FailureReason = 0xA900
    reply.FailedSOPSequence = [item]
    assert failure_reasons(reply) == ["0xa900 data set does not match SOP class"]
