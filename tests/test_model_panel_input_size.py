"""The Model panel's input-size field: the default leaves the model's own, a value reaches
the Segmenter, a MedSAM2 file chooses 512 px by itself."""

from __future__ import annotations

import pytest

from napari_sam2.widget._model_panel import ModelPanel


@pytest.fixture
def panel(qtbot):
    p = ModelPanel()
    qtbot.addWidget(p)
    return p


def test_default_input_size_leaves_the_model_its_own(panel):
    assert panel.input_size.value() == 0
    assert panel.input_size.text() == "model default (1024 px)"
    assert "image_size" not in panel.options()


def test_medsam2_checkpoint_chooses_tiny_at_512(panel, tmp_path):
    messages = []
    panel.status.connect(messages.append)
    panel.size_combo.setCurrentText("large")
    panel.ckpt_edit.setText(str(tmp_path / "MedSAM2_latest.pt"))
    panel.ckpt_edit.editingFinished.emit()
    assert panel.options()["image_size"] == 512 and panel.options()["model"] == "tiny"
    assert "512 px" in messages[-1]


def test_a_chosen_size_is_kept_for_medsam2_and_other_files(panel, tmp_path):
    panel.input_size.setValue(1024)
    panel.ckpt_edit.setText(str(tmp_path / "MedSAM2_CTLesion.pt"))
    panel.ckpt_edit.editingFinished.emit()
    assert panel.options()["image_size"] == 1024  # the user's choice wins
    panel.input_size.setValue(0)
    panel.ckpt_edit.setText(str(tmp_path / "sam2.1_hiera_tiny.pt"))
    panel.ckpt_edit.editingFinished.emit()
    assert "image_size" not in panel.options()


def test_loaded_model_runs_at_the_chosen_input_size(panel, qtbot, sam2_random_checkpoint):
    from conftest import TEST_IMAGE_SIZE

    loaded = []
    panel.loaded.connect(loaded.append)
    panel.backend_combo.setCurrentText("sam2")
    panel.size_combo.setCurrentText("tiny")
    panel.device_combo.setCurrentText("cpu")
    panel.ckpt_edit.setText(str(sam2_random_checkpoint))
    panel.input_size.setValue(TEST_IMAGE_SIZE)
    panel.load()
    qtbot.waitUntil(lambda: bool(loaded), timeout=120_000)
    assert loaded[0].describe()["image_size"] == TEST_IMAGE_SIZE
