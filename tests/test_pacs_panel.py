"""The dock's PACS panel against a private Orthanc: search, open (progress, Cancel), draw,
send as DICOM SEG, and a refusal that keeps the labels and saves the SEG locally."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from _orthanc import PASSWORD, USER, start_orthanc
from napari_sam2.io import dicomweb
from napari_sam2.io.medical.dicom import read_dicom
from napari_sam2.widget._pacs_panel import PacsPanel
from test_medical_dicom import write_series
from widget_helpers import TIMEOUT, click, make_widget, segment_and_wait

AUTH = {"username": USER, "password": PASSWORD}


def _series(shared_data, folder):
    write_series(shared_data, folder)
    study = generate_uid()
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.save_as(path)
    return study


def _panel(viewer, server) -> tuple:
    w = make_widget(viewer)
    (panel,) = [p for p in w.panels if isinstance(p, PacsPanel)]
    panel.url_edit.setText(server.url)
    panel.user_edit.setText(USER)
    panel.password_edit.setText(PASSWORD)
    return w, panel


def _open(qtbot, viewer, panel) -> object:
    panel.search_edits["description"].setText("head 3mm")
    panel.search()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    assert panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "CT"
    panel.open_selected()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    (image,) = [layer for layer in viewer.layers if layer._type_string == "image"]
    return image


def test_open_draw_and_send_from_the_panel(make_napari_viewer, qtbot, shared_data, tmp_path):
    pytest.importorskip("highdicom")
    server = start_orthanc(tmp_path / "orthanc")
    try:
        study = _series(shared_data, tmp_path / "series")
        server.upload(sorted((tmp_path / "series").iterdir()))
        viewer = make_napari_viewer()
        w, panel = _panel(viewer, server)
        panel.copy_edit.setText(str(tmp_path / "copy"))
        image = _open(qtbot, viewer, panel)
        assert len(list((tmp_path / "copy").glob("*.dcm"))) == 25  # the local copy asked for
        ((ref, ref_kwargs, _),) = read_dicom(tmp_path / "series")
        np.testing.assert_array_equal(image.data, ref)
        np.testing.assert_allclose(image.scale, ref_kwargs["scale"])
        np.testing.assert_allclose(image.translate, ref_kwargs.get("translate", 0))
        medical, ref_medical = image.metadata["medical"], ref_kwargs["metadata"]["medical"]
        np.testing.assert_allclose(medical["source_affine"], ref_medical["source_affine"])
        assert image.scale[0] != 1.0  # real slice spacing in mm, not pixels
        assert panel.bar.value() == panel.bar.maximum() == 25
        assert PASSWORD not in repr(image.metadata)
        assert image.metadata["medical"]["dicomweb"]["study"] == study
        assert w.session.image_layer is image  # the dock made its prompts and labels
        labels = w.session.labels_layer
        assert labels is not None and labels.data.shape == image.data.shape
        # segment on a plane with the dock (classical backend), as a user would
        z = image.data.shape[0] // 2
        viewer.dims.set_point(0, image.data_to_world((z, 0, 0))[0])
        w.new_points()
        bright = np.unravel_index(np.argmax(image.data[z]), image.data[z].shape)
        click(w.session.points_layer, image.data_to_world((z, *bright)))
        segment_and_wait(qtbot, w)
        w.commit()
        qtbot.waitUntil(lambda: np.any(labels.data[z]), timeout=TIMEOUT)
        assert not np.any(np.delete(labels.data, z, axis=0))
        # names given in the Save section's 'Segment names…' dialog travel with the SEG
        labels.metadata["segments"] = {1: {"label": "Lesion", "type": "Neoplasm"}}
        panel.send()
        qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
        assert "stored on the server" in w.status.text()
        (seg,) = dicomweb.search_series(server.url, study_uid=study, modality="SEG", **AUTH)
        assert seg["instances"] == 1 and seg["series_number"] == 9000
        client = dicomweb.make_client(server.url, **AUTH)
        (item,) = client.search_for_instances(study, seg["series_uid"])
        sent = client.retrieve_instance(study, seg["series_uid"], item["00080018"]["Value"][0])
        assert sent.NumberOfFrames == 1  # one object on one plane
        assert sent.SegmentSequence[0].SegmentLabel == "Lesion"
        assert sent.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == (
            "108369006"
        )
        assert np.count_nonzero(sent.pixel_array) == np.count_nonzero(labels.data)
    finally:
        server.stop()


def test_refused_send_keeps_labels_and_saves_locally(
    make_napari_viewer, qtbot, shared_data, tmp_path
):
    pytest.importorskip("highdicom")
    script = tmp_path / "no_seg.lua"
    script.write_text(
        "function ReceivedInstanceFilter(dicom, origin, info)\n"
        "  return dicom.Modality ~= 'SEG'\nend\n",
        encoding="utf-8",
    )
    server = start_orthanc(tmp_path / "orthanc", extra={"LuaScripts": [str(script)]})
    try:
        _series(shared_data, tmp_path / "series")
        server.upload(sorted((tmp_path / "series").iterdir()))
        viewer = make_napari_viewer()
        w, panel = _panel(viewer, server)
        image = _open(qtbot, viewer, panel)
        assert w.session.image_layer is image
        labels = w.session.labels_layer
        labels.data[3, 2:6, 2:6] = 9
        kept = np.array(labels.data)
        panel.send()
        qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
        assert "does not hold the SEG" in w.status.text()
        np.testing.assert_array_equal(labels.data, kept)
        out = tmp_path / "local_seg.dcm"
        panel.save_local(str(out))
        assert pydicom.dcmread(out).Modality == "SEG"
        assert str(out) in w.status.text()
    finally:
        server.stop()


def test_cancel_leaves_no_layer_and_wrong_password_says_so(
    make_napari_viewer, qtbot, shared_data, tmp_path, monkeypatch
):
    errors: list[str] = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_error", errors.append)
    server = start_orthanc(tmp_path / "orthanc")
    try:
        _series(shared_data, tmp_path / "series")
        server.upload(sorted((tmp_path / "series").iterdir()))
        viewer = make_napari_viewer()
        w, panel = _panel(viewer, server)
        panel.search()
        qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
        before = len(viewer.layers)
        panel.copy_edit.setText(str(tmp_path / "copy"))
        panel.runner.progressed.connect(lambda done, total: panel.runner.cancel())
        panel.open_selected()
        qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
        assert len(viewer.layers) == before
        assert not (tmp_path / "copy").exists()  # no half local copy either
        assert "cancelled" in w.status.text().lower()
        panel.password_edit.setText("nope")
        panel.search()
        qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
        assert "refused the credentials" in w.status.text() and "nope" not in w.status.text()
        assert len(errors) == 1 and errors[0].startswith("Search failed: ")
        assert "refused the credentials" in errors[0] and "nope" not in errors[0]
        panel.user_edit.setText("")  # a bearer token instead, from a file that is not there
        panel.token_edit.setText(str(tmp_path / "missing_token"))
        rows = panel.table.rowCount()
        panel.search()
        assert not panel.runner.busy and panel.table.rowCount() == rows
        assert "Token file not read" in w.status.text()
    finally:
        server.stop()
