"""A model built with random weights says so: ``Segmenter.notice``, a log warning (what the
command line shows on stderr), the dock's status line and its load notification."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("sam2")

from napari_sam2.engine import Segmenter  # noqa: E402
from napari_sam2.engine.backends.factory import RANDOM_WEIGHTS_NOTICE  # noqa: E402
from napari_sam2.widget._model_panel import describe_model  # noqa: E402

SIZE = 256  # as the conftest fixtures: a fast build


@pytest.fixture(scope="module")
def random_seg():
    return Segmenter("tiny", backend="sam2", random_weights=True, device="cpu", image_size=SIZE)


def test_random_weights_sets_a_notice_and_logs_it_once(caplog):
    with caplog.at_level(logging.WARNING, logger="napari_sam2"):
        seg = Segmenter("tiny", backend="auto", random_weights=True, device="cpu", image_size=SIZE)
    assert seg.notice == RANDOM_WEIGHTS_NOTICE
    assert "random weights" in seg.notice and "meaningless" in seg.notice
    assert seg.describe()["random_weights"] is True
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged.count(RANDOM_WEIGHTS_NOTICE) == 1


def test_checkpoint_model_has_no_notice(sam2_random_segmenter):
    assert sam2_random_segmenter.notice is None  # loaded from a file: no notice


def test_status_line_names_random_weights_not_the_classical_fallback(random_seg):
    line = describe_model(random_seg)
    assert line.startswith("Random weights: the masks are meaningless")
    assert "Classical" not in line


def test_dock_shows_the_notice(make_napari_viewer, qtbot, monkeypatch, random_seg):
    import numpy as np

    from napari_sam2.widget import _notify
    from widget_helpers import make_widget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8))
    w = make_widget(viewer, random_seg)
    assert "Random weights: the masks are meaningless" in w.status.text()
    shown = []
    monkeypatch.setattr(_notify, "show_warning", shown.append)
    w.model_panel._loaded(random_seg)  # what a load from the model panel ends with
    assert shown == [RANDOM_WEIGHTS_NOTICE]
    assert "Random weights" in w.status.text()
