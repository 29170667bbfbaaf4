"""The "Segment everything" panel in a real viewer (classical backend, real nuclei)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.engine import Segmenter
from napari_sam2.widget._everything_panel import EverythingPanel
from widget_helpers import TIMEOUT, make_widget


@pytest.fixture
def nuclei(shared_data):
    return tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")


def _panel(w) -> EverythingPanel:
    [p] = [p for p in w.panels if isinstance(p, EverythingPanel)]
    return p


def test_segment_everything_one_undo_step(make_napari_viewer, qtbot, nuclei):
    viewer = make_napari_viewer()
    viewer.add_image(nuclei, name="nuclei", scale=(0.5, 0.5))
    w = make_widget(viewer)
    w.new_labels()
    labels = w.session.labels_layer
    labels.data[:4, :4] = 9  # an object the user already has
    p = _panel(w)
    p.min_area.setValue(5.0)  # µm² with scale 0.5: 20 pixels
    p.run()
    assert p.busy and not p.run_btn.isEnabled()
    assert "minutes per plane (1024 clicks each)" in w.status.text()  # said before it runs
    qtbot.waitUntil(lambda: not p.busy, timeout=TIMEOUT)
    expected = (
        Segmenter(backend="classical")
        .set_image(nuclei, contrast_limits=viewer.layers["nuclei"].contrast_limits)
        .segment_everything(min_area=20)
    )
    data = np.asarray(labels.data)
    assert np.all(data[:4, :4] == 9)
    ids = np.unique(data[data != 9])
    assert ids[0] == 0 and ids[1] == 10 and len(ids) - 1 == expected.max()
    assert np.array_equal(data[4:, 4:] > 0, expected[4:, 4:] > 0)
    assert "objects written" in w.status.text()
    assert p.progress.value() == p.progress.maximum() > 0
    labels.undo()  # one undo step removes them all
    data = np.asarray(labels.data)
    assert data.max() == 9 and (data > 0).sum() == 16


def test_cancel_leaves_labels_unchanged(make_napari_viewer, qtbot, nuclei):
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([nuclei] * 4), name="stack")
    w = make_widget(viewer)
    w.new_labels()
    p = _panel(w)
    p.scope.setCurrentIndex(1)  # all planes
    p.run()
    p.cancel()
    qtbot.waitUntil(lambda: not p.busy, timeout=TIMEOUT)
    assert w.session.labels_layer.data.max() == 0
    assert "cancelled" in w.status.text() and p.run_btn.isEnabled()


def test_all_planes_and_advanced_fold(make_napari_viewer, qtbot, nuclei):
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([nuclei, nuclei[::-1]]), name="stack")
    w = make_widget(viewer)
    p = _panel(w)
    viewer.layers.remove(w.session.labels_layer)  # the one docking made: none left
    assert w.session.labels_layer is None
    p.run()  # no labels layer: a warning, nothing runs
    assert not p.busy
    w.new_labels()
    p.advanced.setChecked(True)
    assert not p.advanced_box.isHidden()
    p.scope.setCurrentIndex(1)
    p.run()
    qtbot.waitUntil(lambda: not p.busy, timeout=TIMEOUT)
    data = np.asarray(w.session.labels_layer.data)
    n0 = len(np.unique(data[0])) - 1
    assert n0 > 50 and len(np.unique(data[1])) - 1 == n0
    assert data[1][data[1] > 0].min() == n0 + 1  # IDs continue over the planes
