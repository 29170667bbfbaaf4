"""Undo/redo (Ctrl-Z / Ctrl-Shift-Z on the output Labels layer) say in the dock's status line
what they undid: no stale "Wrote label(s) …" after an undo."""

from __future__ import annotations

import napari
import numpy as np

from napari_sam2.adapter.history import describe_step, format_ids
from widget_helpers import click, discs, ready_widget, segment_and_wait


def _key(viewer, qtbot, shift=False) -> None:
    """Ctrl-Z (Ctrl-Shift-Z) on the canvas, dispatched by napari's keymap as by a user."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    mods = Qt.KeyboardModifier.ControlModifier
    if shift:
        mods |= Qt.KeyboardModifier.ShiftModifier
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_Z, mods)
    qtbot.wait(20)


def test_undo_and_redo_update_the_status_line(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, discs())
    labels = w.session.labels_layer
    for rc in ((40, 40), (40, 75)):
        click(w.session.points_layer, layer.data_to_world(rc))
        segment_and_wait(qtbot, w)
        w.commit()
        w.next_object()
    assert w.status.text().startswith("Wrote label(s) 2.")
    viewer.layers.selection.active = labels
    _key(viewer, qtbot)
    assert labels.data[40, 75] == 0 and labels.data[40, 40] == 1
    assert w.status.text().startswith("Undid label(s) 2.")
    assert "Wrote" not in w.status.text()
    assert "classical" in w.status.text()  # the model line stays, as after a commit
    _key(viewer, qtbot)
    assert w.status.text().startswith("Undid label(s) 1.") and labels.data.max() == 0
    _key(viewer, qtbot)
    assert w.status.text().startswith("Nothing to undo.")
    _key(viewer, qtbot, shift=True)
    assert labels.data[40, 40] == 1
    assert w.status.text().startswith("Redid label(s) 1.")


def test_undo_of_an_overwrite_names_the_object_that_comes_back(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, discs())
    labels = w.session.labels_layer
    labels.data_setitem((np.array([40, 41]), np.array([40, 40])), 7)  # a user's object
    w.overwrite_check.setChecked(True)
    click(w.session.points_layer, layer.data_to_world((40, 40)))
    segment_and_wait(qtbot, w)
    w.commit()
    assert labels.data[40, 40] == 8
    viewer.layers.selection.active = labels
    _key(viewer, qtbot)
    assert labels.data[40, 40] == 7
    assert w.status.text().startswith("Undid label(s) 8. Label(s) 7 back.")


def test_describe_step_of_paint_erase_and_many_ids():
    layer = napari.layers.Labels(np.zeros((20, 20), np.int32))
    assert describe_step(layer, "undo") == "Nothing to undo."
    layer.paint((5, 5), 4)  # napari's brush: a masked paint atom
    assert describe_step(layer, "undo") == "Undid label(s) 4."
    layer.data_setitem(tuple(np.nonzero(layer.data == 4)), 0)  # erased
    assert describe_step(layer, "undo") == "Undid an erase. Label(s) 4 back."
    layer.undo()
    assert describe_step(layer, "redo") == "Redid an erase. Label(s) 4 removed again."
    rr = np.arange(10)
    layer.data_setitem((rr + 10, rr), rr + 1)  # ten objects in one step
    assert describe_step(layer, "undo") == "Undid label(s) 1–10 (10 labels)."
    assert format_ids([2, 3]) == "2, 3"
