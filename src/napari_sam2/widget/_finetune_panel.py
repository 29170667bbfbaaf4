"""The "Fine-tune" panel: train the loaded SAM 2 model's mask decoder on the objects of the
Labels layer(s), in the background, and offer to use the result (docs/finetuning.md)."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..adapter.finetune import training_data
from ..engine.errors import NapariSam2Error
from ..engine.segmenter import Segmenter
from ..engine.training.finetune import finetune
from . import _notify
from ._runner import BackgroundRun, run_controls


def _miou(d: dict) -> str:
    return " / ".join("-" if d[k] is None else f"{d[k]:.3f}" for k in ("val_point", "val_box"))


class FinetunePanel(QGroupBox):
    """Epochs, output file, Fine-tune/Cancel, progress; then "Use fine-tuned model"."""

    OPEN_BY_DEFAULT = False  # an occasional task: its section starts collapsed

    def __init__(self, dock, parent=None):
        super().__init__("Fine-tune on your labels", parent)
        self.dock = dock
        self.result = None  # the last FinetuneResult
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.all_images = QCheckBox("All open images with labels")
        self.all_images.setToolTip(
            "Off: the chosen image and its output Labels layer. On: every Image layer with "
            "a Labels layer of its shape that holds objects."
        )
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        self.out_edit = QLineEdit(str(Path.home() / "sam2_finetuned.pt"))
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out_edit, 1)
        row.addWidget(browse)
        form.addRow(self.all_images)
        form.addRow("Epochs", self.epochs)
        form.addRow("Save as", row)
        lay.addLayout(form)
        buttons, self.run_btn, self.cancel_btn, self.progress = run_controls(
            "Fine-tune",
            "Train the mask decoder of the loaded SAM 2 model on your labelled objects "
            "(image encoder frozen; each plane is encoded once)",
        )
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.use_btn = QPushButton("Use fine-tuned model")
        self.use_btn.setEnabled(False)
        lay.addWidget(self.use_btn)
        self.runner = BackgroundRun(
            self,
            dock.set_status,
            self.run_btn,
            self.cancel_btn,
            self.progress,
            cancelling="Fine-tuning: cancelling…",
        )
        self.run_btn.clicked.connect(self.run)
        self.use_btn.clicked.connect(self.use_result)

    def _browse(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save the fine-tuned checkpoint", "", "*.pt")
        if path:
            self.out_edit.setText(path)

    @property
    def busy(self) -> bool:
        return self.runner.busy

    # ------------------------------------------------------------------ train
    def run(self):
        if self.busy:
            _notify.show_info("Fine-tuning is already running.")
            return
        seg = self.dock.session.segmenter
        if seg is None or getattr(seg.backend, "loaded", None) is None:
            _notify.show_warning("Fine-tuning needs a SAM 2 model: load a SAM 2 checkpoint first.")
            return
        out = self.out_edit.text().strip()
        if not out:
            _notify.show_warning("Choose where to save the fine-tuned checkpoint.")
            return
        try:
            data = training_data(self.dock.session, all_images=self.all_images.isChecked())
        except NapariSam2Error as e:
            _notify.show_warning(str(e))
            return
        self.use_btn.setEnabled(False)
        self.summary.setText("")
        kwargs = {**data.kwargs(), "out": out, "segmenter": seg, "epochs": self.epochs.value()}
        self.runner.start(
            lambda cancel, progress: finetune(**kwargs, cancel=cancel, progress=progress),
            self._done,
            failed="Fine-tuning failed",
            cancelled="Fine-tuning cancelled: no checkpoint was written.",
            status=f"Fine-tuning on {len(data.images)} image(s)…",
        )

    def cancel(self):
        self.runner.cancel()

    def _done(self, res):
        self.result = res
        text = (
            f"Saved {res.checkpoint}\nValidation mIoU (click / box): {_miou(res.val_before)} → "
            f"{_miou(res.val_after)}; epoch {res.best_epoch} kept of {len(res.history) - 1}."
        )
        self.summary.setText(text)
        self.use_btn.setEnabled(True)
        self.dock.set_status("Fine-tuning done: " + text.replace("\n", "; "))

    # -------------------------------------------------------------------- use
    def use_result(self):
        """Load the written checkpoint through the normal path and make it the model."""
        res = self.result
        if res is None or res.checkpoint is None or self.busy:
            return
        card = res.card
        self.use_btn.setEnabled(False)
        self.runner.start(
            lambda cancel, progress: Segmenter(
                card["size"],
                res.checkpoint,
                backend="sam2",
                version=card["version"],
                device=card["device"],
                image_size=card["image_size"],
            ),
            self._use,
            failed="The fine-tuned model could not be loaded",
            cancellable=False,
            reports_progress=False,
            status=f"Loading {res.checkpoint}…",
        )

    def _use(self, seg):
        self.dock.set_segmenter(seg)
        self.dock.set_status(f"Using the fine-tuned model {self.result.checkpoint}.")

    def close_panel(self):
        """Stop a running training; nothing else is connected outside the panel."""
        self.runner.close()
