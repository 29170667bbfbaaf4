"""The dock is as wide as its widest panel row: nothing is clipped on the right."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea

from napari_sam2.engine import ClassicalBackend, Segmenter
from napari_sam2.widget import SAM2Widget


def test_no_panel_row_is_clipped_on_the_right(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.uint16), name="img")
    w = SAM2Widget(viewer, segmenter=Segmenter(predictor=ClassicalBackend()))
    viewer.window.add_dock_widget(w, area="right")
    scroll = w.findChild(QScrollArea)
    content = scroll.widget()
    qtbot.waitUntil(lambda: content.width() > 0)
    qtbot.wait(100)
    assert content.minimumSizeHint().width() <= scroll.viewport().width()
    assert content.width() <= scroll.viewport().width()
    # a panel growing wider (a long text in a row) widens the dock instead of clipping it
    w.panels[0].setMinimumWidth(content.width() + 80)
    want = w.panels[0].minimumWidth()
    qtbot.waitUntil(lambda: scroll.minimumWidth() > want)
    assert scroll.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
