"""The Propagate panel in a real viewer, on the ovule nuclei stack (classical backend)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tifffile

from napari_sam2.adapter.propagate import merged_edit, propose_axis, stop_range
from napari_sam2.widget._propagate_panel import PropagatePanel
from widget_helpers import TIMEOUT, ready_widget


@pytest.fixture(scope="module")
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8.tif")
    gt = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8_labels.tif")
    return img, gt


def _digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _panel(w) -> PropagatePanel:
    [p] = [p for p in w.panels if isinstance(p, PropagatePanel)]
    return p


def _setup(viewer, nuclei, lid=5, scale=(0.2837, 0.1268, 0.1268)):
    img, gt = nuclei
    layer, w = ready_widget(viewer, img, scale=scale, axis_labels=("z", "y", "x"))
    zs = np.flatnonzero((gt == lid).any(axis=(1, 2)))
    z = int(zs[len(zs) // 2])
    labels = w.session.labels_layer
    labels.data[z][gt[z] == lid] = lid
    viewer.dims.set_current_step(0, z)
    return w, _panel(w), labels, z, zs


def test_propagate_one_nucleus_is_one_undo_step(make_napari_viewer, qtbot, nuclei):
    viewer = make_napari_viewer()
    w, panel, labels, z, zs = _setup(viewer, nuclei)
    assert panel.axis_combo.currentData() == 0 and panel.axis_combo.currentText() == "z (0)"
    before = labels.data.copy()
    steps = []
    panel.relay.progressed.connect(lambda d, t: steps.append((d, t)))
    panel.propagate()
    assert panel.running and not panel.run_btn.isEnabled()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    rep = panel.last_report
    assert rep is not None and rep.applied and not rep.cancelled
    got = np.flatnonzero((labels.data == 5).any(axis=(1, 2)))
    assert len(got) >= 8 and got.min() <= z - 3 and got.max() >= z + 3
    assert abs(got.min() - zs.min()) <= 6 and abs(got.max() - zs.max()) <= 6
    assert set(np.unique(labels.data)) == {0, 5}
    np.testing.assert_array_equal(labels.data[z], before[z])
    assert steps and steps[-1] == (99, 99)
    assert "one undo step" in w.status.text()
    assert labels.metadata["napari_sam2"]["propagations"][-1]["axis"] == 0
    labels.undo()  # the whole propagation goes in one step
    assert _digest(labels.data) == _digest(before)
    labels.redo()
    assert set(np.flatnonzero((labels.data == 5).any(axis=(1, 2)))) == set(got)


def test_cancel_leaves_the_layer_exactly_as_it_was(make_napari_viewer, qtbot, nuclei):
    viewer = make_napari_viewer()
    img, gt = nuclei
    w, panel, labels, z, _ = _setup(viewer, nuclei)
    labels.data[z] = gt[z]  # every nucleus of the plane: a longer run
    before = _digest(labels.data)
    panel.relay.progressed.connect(lambda d, t: panel.cancel())
    panel.propagate()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    rep = panel.last_report
    assert rep.cancelled and rep.planes_done < rep.planes_total
    assert _digest(labels.data) == before
    assert "cancelled" in w.status.text().lower()
    assert panel.run_btn.isEnabled()


def test_selected_label_and_range(make_napari_viewer, qtbot, nuclei):
    viewer = make_napari_viewer()
    img, gt = nuclei
    w, panel, labels, z, _ = _setup(viewer, nuclei)
    labels.data[z][gt[z] == 7] = 7
    labels.selected_label = 5
    panel.objects_combo.setCurrentText("selected label")
    panel.range_combo.setCurrentText("current to end")
    panel.propagate()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    assert panel.last_report.label_ids == [5]
    assert not (labels.data[:z] != 0).any()  # nothing before the current plane
    assert (labels.data[z + 1 :] == 5).any() and not (labels.data[z + 1 :] == 7).any()


def test_no_object_on_plane_warns_and_writes_nothing(make_napari_viewer, qtbot, nuclei):
    viewer = make_napari_viewer()
    w, panel, labels, z, _ = _setup(viewer, nuclei)
    viewer.dims.set_current_step(0, 99)
    before = _digest(labels.data)
    panel.propagate()
    assert not panel.running
    assert "No object on this plane" in w.status.text()
    assert _digest(labels.data) == before


def test_axis_proposal_from_axis_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.zeros((3, 4, 16, 16), np.uint8)
    assert propose_axis(viewer.add_image(data, axis_labels=("t", "z", "y", "x"))) is None
    assert propose_axis(viewer.add_image(data, axis_labels=("time", "a", "y", "x"))) == 0
    assert propose_axis(viewer.add_image(data, axis_labels=("a", "Z", "y", "x"))) == 1
    assert propose_axis(viewer.add_image(data[0], axis_labels=("q", "y", "x"))) == 0
    assert stop_range(10, 4, "current to end") == (4, 9)
    assert stop_range(10, 4, "start to current") == (0, 4)
    assert merged_edit([]) is None


def test_time_lapse_propagate_then_tracks_table_ctc(
    make_napari_viewer, qtbot, shared_data, tmp_path
):
    img = tifffile.imread(shared_data / "bacteria_phase_tyx_uint8.tif")[:8]
    gt = tifffile.imread(shared_data / "bacteria_phase_tyx_uint8_labels.tif")[:8]
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, img, axis_labels=("t", "y", "x"))
    panel = _panel(w)
    assert panel.axis_combo.currentText() == "t (0)"
    labels = w.session.labels_layer
    labels.data[0] = gt[0]
    viewer.dims.set_current_step(0, 0)
    panel.propagate()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    ids0 = sorted(int(v) for v in np.unique(gt[0]) if v)
    assert panel.last_report.label_ids == ids0
    assert (labels.data[1:] > 0).any()
    tracks = panel.add_tracks()
    assert tracks is not None and tracks in viewer.layers
    assert set(np.unique(tracks.data[:, 0]).astype(int)) <= set(ids0)
    csv_path = panel.save_table(tmp_path / "objects.csv")
    assert csv_path.read_text().splitlines()[0].startswith("frame,label_id,area_px,area")
    out = panel.export_ctc(tmp_path / "01_RES")
    assert len(list(out.glob("mask*.tif"))) == 8 and (out / "res_track.txt").is_file()


def test_a_run_that_writes_nothing_says_so_and_records_no_undo_step(
    make_napari_viewer, qtbot, nuclei
):
    """Seen as a new user (SAM 2 video mode): '0 pixel(s) written (one undo step)' while no
    undo step was recorded, so Ctrl-Z then removed the committed object instead."""
    viewer = make_napari_viewer()
    img, gt = nuclei
    w, panel, labels, z, _ = _setup(viewer, nuclei)
    labels.data[:] = 0
    labels.data_setitem(_on(gt, 99), 5)
    viewer.dims.set_current_step(0, 99)
    panel.direction_combo.setCurrentText("forward")
    panel.propagate()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    assert panel.last_report.planes_written() == []
    text = w.status.text()
    assert "Nothing written: object 5: forward end" in text
    assert "undo step" not in text
    labels.undo()  # the one step there is: the object drawn on plane 99
    assert not labels.data.any()


def _on(gt, z):
    """Fancy index of one ground-truth nucleus on plane ``z`` of the stack."""
    lid = int(np.bincount(gt[z][gt[z] > 0]).argmax())
    zz, rr, cc = np.nonzero(gt == lid)
    keep = zz == z
    return zz[keep], rr[keep], cc[keep]
