"""The dock's status line: in sight under the Segment buttons, never left saying "Wrote
label(s)" after a failure, and a warning as soon as a Labels layer of another shape is
chosen (new-user findings, session 5)."""

from __future__ import annotations

import numpy as np

from widget_helpers import click, discs, ready_widget, segment_and_wait

LEFT = (40, 40)


def _quiet(monkeypatch):
    from napari_sam2.widget import _notify

    seen = []
    for name in ("show_info", "show_warning", "show_error"):
        monkeypatch.setattr(_notify, name, seen.append)
    return seen


def test_status_and_busy_bar_come_before_the_panels(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    lay = w.segment_box.parentWidget().layout()
    order = [lay.itemAt(i).widget() for i in range(lay.count())]
    i_box, i_bar, i_status = (order.index(x) for x in (w.segment_box, w.busy_bar, w.status))
    assert i_box < i_bar < i_status == len(order) - 1  # the status ends the daily controls
    assert not any(p in order for p in w.panels)
    # the panels come after, in their sections (which scroll; the daily controls do not)
    outer = w.layout()
    parts = [outer.itemAt(i).widget() for i in range(outer.count())]
    assert parts == [w.segment_box.parentWidget(), w.sections_area]
    assert all(w.sections_area.isAncestorOf(p) for p in w.panels)


def test_a_failed_commit_replaces_the_success_text(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    seen = _quiet(monkeypatch)
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    w.commit()
    assert "Wrote label" in w.status.text()
    before = w.session.labels_layer.data.copy()
    w.commit()  # nothing new to commit: refused with a warning
    np.testing.assert_array_equal(w.session.labels_layer.data, before)
    assert seen and "Wrote label" not in w.status.text()
    assert w.status.text() == seen[-1]


def test_a_prompt_error_is_kept_in_the_status_line(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    seen = _quiet(monkeypatch)
    w.session.points_layer.data = np.empty((0, 2))
    assert w.session.shapes_layer is None or not len(w.session.shapes_layer.data)
    w.segment()  # no prompt at all
    assert seen and w.status.text() == seen[-1]


def test_choosing_labels_of_another_shape_warns_at_once(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    wrong = viewer.add_labels(np.zeros((3, 50, 50), np.uint16), name="other stack")
    w.labels_combo.set_value(wrong)
    text = w.status.text()
    assert "other stack" in text and "(3, 50, 50)" in text and "(80, 120)" in text
    assert "Pick another" in text


def test_everything_area_limits_say_no_limit_at_zero(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    from napari_sam2.widget._everything_panel import EverythingPanel

    p = next(p for p in w.panels if isinstance(p, EverythingPanel))
    assert p.min_area.value() == 0 and p.min_area.text() == "no minimum"
    assert p.max_area.value() == 0 and p.max_area.text() == "no maximum"
    p.max_area.setValue(500)
    assert p.max_area.text() != "no maximum"
