"""The dock widget under hostile use: wrong layers, layers removed or data replaced while a
worker runs, a model switched mid-run.  Nothing may escape into napari's error reporter
(pytest-qt fails a test on an exception in a Qt slot), and labels are never corrupted."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_sam2.engine import Segmenter
from widget_helpers import TIMEOUT, click, discs, make_widget, ready_widget, segment_and_wait

LEFT, RIGHT = (40, 40), (40, 75)


def _digest(layer) -> str:
    return hashlib.sha256(np.ascontiguousarray(layer.data).tobytes()).hexdigest()


@pytest.fixture
def messages(monkeypatch):
    """Every warning/error/info the dock shows, in order."""
    got = []
    for name in ("show_warning", "show_error", "show_info"):
        monkeypatch.setattr(f"napari_sam2.widget._notify.{name}", got.append)
    return got


def _gated(w):
    """Make the next computes wait until the returned event is set (a worker 'in flight')."""
    gate = threading.Event()
    compute = w.session.compute

    def slow(req):
        assert gate.wait(30)
        return compute(req)

    w.session.compute = slow
    return gate


def test_wrong_layer_types_are_not_offered_and_odd_prompts_are_refused(
    make_napari_viewer, qtbot, messages
):
    viewer = make_napari_viewer()
    image, w = ready_widget(viewer, discs())
    lab = w.session.labels_layer
    # a Labels layer is no prompt layer, an Image is no labels layer: the pickers refuse them
    w.points_combo.set_value(lab)
    w.labels_combo.set_value(image)
    assert w.session.points_layer is not lab and w.session.labels_layer is not image
    # the user's own prompt layers: no "positive" column, lines instead of boxes
    theirs = viewer.add_points([[40, 40]], name="plain points")
    shapes = viewer.add_shapes([[[10, 10], [60, 100]]], shape_type="line", name="a line")
    w.points_combo.set_value(theirs)
    w.shapes_combo.set_value(shapes)
    assert w.session.points_layer is theirs and w.session.shapes_layer is shapes
    before = _digest(w.session.labels_layer)
    w.segment()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    text = " ".join(map(str, messages)).lower()
    if w.session.result is None:  # refused: said why, wrote nothing
        assert "line" in text or "shape" in text, messages
    else:  # the line is ignored with a note, the click is used as a positive point
        assert "line" in text or "ignored" in text, messages
        assert w.session.result.masks()[0][LEFT]
    assert _digest(w.session.labels_layer) == before


def test_labels_of_the_wrong_shape_get_a_message_and_nothing_written(
    make_napari_viewer, qtbot, messages
):
    viewer = make_napari_viewer()
    image, w = ready_widget(viewer, discs())
    right = w.session.labels_layer
    wrong = viewer.add_labels(np.arange(100, dtype=np.int32).reshape(10, 10), name="wrong")
    w.labels_combo.set_value(wrong)
    assert w.session.labels_layer is wrong
    before = _digest(wrong)
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    w.commit()
    assert any("(10, 10)" in str(m) and "(80, 120)" in str(m) for m in messages), messages
    assert any("nothing was written" in str(m) for m in messages)
    assert _digest(wrong) == before
    assert w.session.result is not None  # the preview is kept for a right layer
    w.labels_combo.set_value(right)
    w.commit()
    assert w.session.labels_layer.data[LEFT] == 1


@pytest.mark.parametrize("removed", ["image", "points", "labels", "all"])
def test_layers_removed_while_the_worker_runs(make_napari_viewer, qtbot, messages, removed):
    viewer = make_napari_viewer()
    image, w = ready_widget(viewer, discs())
    pts, lab = w.session.points_layer, w.session.labels_layer
    before = _digest(lab)
    click(pts, LEFT)
    gate = _gated(w)
    w.segment()
    assert w.busy
    targets = {"image": [image], "points": [pts], "labels": [lab], "all": [image, pts, lab]}
    for layer in targets[removed]:
        viewer.layers.remove(layer)
    gate.set()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    if removed in ("image", "all"):
        assert w.session.result is None  # the result of a removed image is dropped
        assert "dropped" in w.status.text().lower()
    w.commit()  # nothing committable, or no labels layer: a message, no exception
    if removed != "points":
        assert messages
    assert _digest(lab) == before or removed == "points"
    if removed == "points":  # the prompts were read before the layer went: still valid
        assert lab.data[LEFT] == 1


def test_replaced_image_data_is_never_segmented_with_the_old_embedding(
    make_napari_viewer, qtbot, messages
):
    viewer = make_napari_viewer()
    old = discs(centers=(LEFT,))
    new = discs(centers=(RIGHT,))
    image, w = ready_widget(viewer, old, contrast_limits=(0, 3000))
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    assert w.session.result.masks()[0][LEFT]

    # replaced while a worker runs: that worker's result is for the old pixels
    gate = _gated(w)
    w.segment()
    image.data = new
    gate.set()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    assert w.session.result is None

    # the next segment uses the new pixels, never the cached old embedding
    w.session.compute = w.session.compute.__closure__[0].cell_contents  # un-gate
    segment_and_wait(qtbot, w)
    src = w.session.segmenter.source
    np.testing.assert_array_equal(np.asarray(src.raw_plane(())), new)
    fresh = Segmenter(backend="classical")
    fresh.set_image(new, contrast_limits=(0, 3000))
    want = fresh.predict((), points=[LEFT], point_labels=[1])[0]
    got = w.session.result.predictions[0].candidates
    np.testing.assert_array_equal(got, want.candidates)
    fresh.set_image(old, contrast_limits=(0, 3000))
    stale = fresh.predict((), points=[LEFT], point_labels=[1])[0]
    assert not np.array_equal(got, stale.candidates)  # the old pixels give another mask


def test_model_switched_mid_run_drops_the_old_models_result(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    first = Segmenter(backend="classical")
    image, w = ready_widget(viewer, discs(), segmenter=first)
    lab = w.session.labels_layer
    before = _digest(lab)
    click(w.session.points_layer, LEFT)
    gate = _gated(w)
    w.segment()
    second = Segmenter(backend="classical")
    w.set_segmenter(second)  # what the model panel does when a load finishes
    gate.set()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    assert w.session.result is None  # the old model's result is not shown
    w.commit()
    assert _digest(lab) == before
    w.session.compute = w.session.compute.__closure__[0].cell_contents
    segment_and_wait(qtbot, w)
    assert w.session.result.info["stats"]["encodes"] == 1  # computed by the new model
    assert second.stats.encodes == 1
    w.commit()
    assert lab.data[LEFT] == 1


def test_two_widgets_on_one_viewer_do_not_share_state(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, w1 = ready_widget(viewer, discs())
    w2 = make_widget(viewer)
    assert w2.session.points_layer is w1.session.points_layer  # no duplicate layers
    viewer.window.remove_dock_widget(w2)  # closing one gives the keys back to the other
    pts = w1.session.points_layer
    click(pts, LEFT)
    viewer.layers.selection.active = pts
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: not w1.busy and w1.session.result is not None, timeout=TIMEOUT)
    assert w2.session.result is None
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_C)
    assert w1.session.labels_layer.data[LEFT] == 1
