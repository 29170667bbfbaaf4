"""The "Fine-tune" panel in a real viewer: real nuclei and their labels, SAM 2.1 tiny with
random weights at input size 256."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_sam2.adapter.finetune import training_data
from napari_sam2.engine.errors import LabelsError
from napari_sam2.engine.training.finetune import card_path_for
from napari_sam2.widget._finetune_panel import FinetunePanel
from widget_helpers import TIMEOUT, make_widget

CROP = 128


@pytest.fixture
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")[:CROP, :CROP]
    lab = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif")[:CROP, :CROP]
    return img, lab.astype(np.int32)


def _panel(w) -> FinetunePanel:
    [p] = [p for p in w.panels if isinstance(p, FinetunePanel)]
    return p


def _viewer_with_labels(make_napari_viewer, nuclei, segmenter=None):
    img, lab = nuclei
    viewer = make_napari_viewer()
    viewer.add_image(img, name="nuclei")
    w = make_widget(viewer, segmenter)
    gt = viewer.add_labels(lab, name="ground truth")
    w.labels_combo.set_value(gt)
    assert w.session.labels_layer is gt
    return viewer, w, gt


def test_training_data_from_layers(make_napari_viewer, nuclei):
    viewer, w, gt = _viewer_with_labels(make_napari_viewer, nuclei)
    img, lab = nuclei
    data = training_data(w.session)
    assert data.names == ["nuclei + ground truth"]
    assert np.array_equal(data.labels[0], lab) and data.labels[0] is not gt.data  # a copy
    assert data.image_kwargs[0]["contrast_limits"] == pytest.approx(
        viewer.layers["nuclei"].contrast_limits
    )
    # all open images: each with a Labels layer of its shape that holds objects
    viewer.add_image(img[:64, :64], name="small")
    viewer.add_labels(lab[:64, :64], name="small gt")
    viewer.add_labels(np.zeros((64, 64), np.int32), name="empty")
    both = training_data(w.session, all_images=True)
    assert both.names == ["nuclei + ground truth", "small + small gt"]
    assert both.labels[1].shape == (64, 64)
    gt.data = np.zeros_like(lab)
    with pytest.raises(LabelsError, match="no object"):
        training_data(w.session)


def test_panel_needs_a_sam2_model(make_napari_viewer, nuclei, tmp_path):
    _, w, _ = _viewer_with_labels(make_napari_viewer, nuclei)  # classical backend
    p = _panel(w)
    p.out_edit.setText(str(tmp_path / "m.pt"))
    p.run()
    assert not p.busy and p.run_btn.isEnabled() and not p.use_btn.isEnabled()
    assert list(tmp_path.iterdir()) == []


def test_panel_cancel_writes_nothing(
    make_napari_viewer, qtbot, nuclei, sam2_random_segmenter, tmp_path
):
    _, w, _ = _viewer_with_labels(make_napari_viewer, nuclei, sam2_random_segmenter)
    p = _panel(w)
    p.epochs.setValue(50)
    p.out_edit.setText(str(tmp_path / "m.pt"))
    p.run()
    assert p.busy and p.cancel_btn.isEnabled() and not p.run_btn.isEnabled()
    p.cancel()
    qtbot.waitUntil(lambda: not p.busy, timeout=TIMEOUT)
    assert "cancelled" in w.status.text()
    assert p.run_btn.isEnabled() and not p.use_btn.isEnabled()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_panel_trains_and_uses_the_result(
    make_napari_viewer, qtbot, nuclei, sam2_random_segmenter, tmp_path
):
    _, w, _ = _viewer_with_labels(make_napari_viewer, nuclei, sam2_random_segmenter)
    p = _panel(w)
    p.epochs.setValue(1)
    out = tmp_path / "panel.pt"
    p.out_edit.setText(str(out))
    p.run()
    qtbot.waitUntil(lambda: not p.busy, timeout=4 * TIMEOUT)
    assert out.is_file() and p.result is not None and p.result.checkpoint == out
    card = json.loads(card_path_for(out).read_text(encoding="utf-8"))
    assert card["data"] == [{"name": "nuclei + ground truth", "planes": [[]]}]
    assert card["epochs"] == 1 and card["n_objects"] == 12
    assert "Validation mIoU" in p.summary.text() and str(out) in p.summary.text()
    assert p.progress.value() == p.progress.maximum() > 1
    assert p.use_btn.isEnabled()
    p.use_result()
    qtbot.waitUntil(lambda: not p.busy, timeout=TIMEOUT)
    seg = w.session.segmenter
    assert seg is not sam2_random_segmenter
    assert seg.describe()["checkpoint"] == str(out) and seg.describe()["image_size"] == 256
    assert "fine-tuned model" in w.status.text()
