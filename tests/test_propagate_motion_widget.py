"""Time axes in the widget and with SAM 2: the axis label picks the rule; video off CUDA
says what it will cost before it starts; SAM 2.1's object score reaches the rule."""

from __future__ import annotations

import numpy as np

from napari_sam2.adapter.propagate import prepare_propagation, time_estimate
from napari_sam2.engine.propagation import motion
from timelapse_helpers import moving_cells
from widget_helpers import TIMEOUT, ready_widget


def _panel(w):
    from napari_sam2.widget._propagate_panel import PropagatePanel

    [p] = [p for p in w.panels if isinstance(p, PropagatePanel)]
    return p


def test_axis_label_sets_the_time_rule(make_napari_viewer, qtbot):
    frames, truth, facts = moving_cells()
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, frames, axis_labels=("t", "y", "x"))
    labels = w.session.labels_layer
    labels.data[0] = truth[0]
    viewer.dims.set_current_step(0, 0)
    job = prepare_propagation(w.session, direction="forward")
    assert job.kwargs["axis_kind"] == "t"
    assert time_estimate(job) is None  # classical backend: projection, no estimate
    panel = _panel(w)
    panel.direction_combo.setCurrentText("forward")
    panel.propagate()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    report = panel.last_report
    assert report.objects[1].stopped["forward"] == "end"
    assert report.objects[facts["exiting"]].stopped["forward"] == motion.LEFT_FIELD
    assert (labels.data[-1] == 1).sum() > 0.8 * (truth[-1] == 1).sum()


def test_z_label_keeps_the_z_rule(make_napari_viewer):
    frames, truth, _ = moving_cells()
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, frames, axis_labels=("z", "y", "x"))
    w.session.labels_layer.data[0] = truth[0]
    viewer.dims.set_current_step(0, 0)
    assert prepare_propagation(w.session).kwargs["axis_kind"] == "z"


def test_sam2_object_score_and_video_estimate(sam2_random_segmenter):
    seg = sam2_random_segmenter
    frames, truth, _ = moving_cells()
    seg.set_image(frames[:3])
    [pred] = seg.predict((0,), points=[(40, 30)], multimask=False)
    assert isinstance(pred.info["object_score"], float)
    labels = np.zeros((3,) + truth.shape[1:], np.int32)
    labels[0] = truth[0] * (truth[0] == 1)
    report = seg.propagate(labels, (0,), axis_kind="t", direction="forward", mode="projection")
    # random weights: whatever the masks, each object ends with a named reason
    reasons = {"end", motion.LOW_SCORE, motion.LOST, motion.DIVIDED, motion.LEFT_FIELD,
               "vanished", "area_jump"}  # fmt: skip
    assert report.objects[1].stopped["forward"] in reasons

    class Job:  # what time_estimate reads of a PropagationJob
        segmenter = seg
        kwargs = {"mode": "video", "stop_at": (0, 9)}

    text = time_estimate(Job)
    assert text.startswith("Video mode on cpu:") and "9 frame(s)" in text
