"""The widget's model panel: backend, size, checkpoint, device, input size; loads in a worker."""

from __future__ import annotations

from pathlib import Path

from napari.qt.threading import create_worker
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
)

from ..engine.backends.factory import BACKENDS, CLASSICAL_NOTICE, RANDOM_WEIGHTS_NOTICE
from ..engine.model.registry import SIZES
from ..engine.segmenter import Segmenter
from . import _notify

DEVICES = ("auto", "cuda", "mps", "cpu")


def describe_model(seg: Segmenter | None) -> str:
    """One line on the loaded model for the dock's status: backend, device, cache."""
    if seg is None:
        return "No model."
    d = seg.describe()
    c = d.get("cache", {})
    txt = (
        f"{d.get('model', d['backend'])} · {d.get('device', 'cpu')} · {_precision(seg, d)}"
        f" · last encode {c.get('last_encode_s', 0):.2f} s · encodes {c.get('encodes', 0)}"
        f" · cache hits {c.get('hits', 0)}"
    )
    if seg.notice:
        txt = _short_notice(seg.notice) + txt
    return txt


def _precision(seg, d: dict) -> str:
    """``bf16 (measured 2.2× faster, masks agree 99.9 %)``: which precision and why."""
    info = getattr(seg, "precision_info", None)
    prec = d.get("precision", "")
    if info is None or info.reason in ("as the backend runs", "asked for"):
        return prec
    return f"{prec} ({info.reason})"


def _short_notice(notice: str) -> str:
    """The status line's prefix for a Segmenter's fallback notice (the full text goes to a
    notification when the model loads)."""
    if notice == CLASSICAL_NOTICE:
        return "Classical backend (no SAM 2 checkpoint found). "
    if notice == RANDOM_WEIGHTS_NOTICE:
        return "Random weights: the masks are meaningless (no checkpoint loaded). "
    return notice.split(":")[0].rstrip(".") + ". "


MAX_INPUT_SIZE = 4096
MEDSAM2_INPUT_SIZE = 512


class ModelPanel(QGroupBox):
    """Choose and load a model; emits :attr:`loaded` with the new :class:`Segmenter`."""

    loaded = Signal(object)
    status = Signal(str)
    busy = Signal(bool)  # a load runs (the dock shows its busy bar)

    def __init__(self, parent=None):
        super().__init__("Model", parent)
        form = QFormLayout(self)
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(BACKENDS)
        self.backend_combo.setToolTip(
            "auto: SAM 2 when a checkpoint is found, else the weight-free classical backend; "
            "transformers: SAM 2 via Hugging Face transformers (a transformers folder, a "
            "cached hub id such as facebook/sam2.1-hiera-tiny, or a .pt)"
        )
        self.size_combo = QComboBox()
        self.size_combo.addItems(SIZES)
        self.ckpt_edit = QLineEdit()
        self.ckpt_edit.setPlaceholderText("auto: search the usual folders")
        browse = QPushButton("…")
        browse.setToolTip("Choose a SAM 2 checkpoint file (.pt)")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.ckpt_edit, 1)
        row.addWidget(browse)
        self.ckpt_edit.editingFinished.connect(self._suggest_input_size)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.input_size = QSpinBox()  # SAM 2's input resolution; 0 = the model's own
        self.input_size.setRange(0, MAX_INPUT_SIZE)
        self.input_size.setSingleStep(32)
        self.input_size.setSuffix(" px")
        self.input_size.setSpecialValueText("model default (1024 px)")
        self.input_size.setToolTip(
            "The resolution the model sees (a multiple of 32). SAM 2.1 is trained at 1024 px; "
            "MedSAM2 checkpoints at 512 px (chosen by itself for a MedSAM2_*.pt file)."
        )
        self.server_edit = QLineEdit()  # encode on a napari-sam2 server: docs/server.md
        self.server_edit.setPlaceholderText("local (or http://gpu-host:8765)")
        self.token_edit = QLineEdit()  # kept in memory only, never saved
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("server token ($NAPARI_SAM2_TOKEN if empty)")
        self.load_btn = QPushButton("Load model")
        self.load_btn.clicked.connect(self.load)
        form.addRow("Backend", self.backend_combo)
        form.addRow("Size", self.size_combo)
        form.addRow("Checkpoint", row)
        form.addRow("Device", self.device_combo)
        form.addRow("Input size", self.input_size)
        form.addRow("Server", self.server_edit)
        form.addRow("Token", self.token_edit)
        form.addRow(self.load_btn)
        self.worker = None

    def _browse(self):
        if self.backend_combo.currentText() == "transformers":  # a transformers folder
            path = QFileDialog.getExistingDirectory(self, "SAM 2 transformers folder")
            if path:
                self.ckpt_edit.setText(path)
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "SAM 2 checkpoint", "", "Checkpoints (*.pt *.pth)"
        )
        if path:
            self.ckpt_edit.setText(path)
            self._suggest_input_size()

    def _suggest_input_size(self) -> None:
        """A MedSAM2 checkpoint (bowang-lab's ``MedSAM2_*.pt``) is SAM 2.1 tiny trained at
        512 px: choose that when the user has not chosen an input size."""
        name = Path(self.ckpt_edit.text().strip()).name.lower()
        if name.startswith("medsam2") and self.input_size.value() == 0:
            self.input_size.setValue(MEDSAM2_INPUT_SIZE)
            self.size_combo.setCurrentText("tiny")
            self.status.emit("MedSAM2 checkpoint: size tiny, input 512 px (as it was trained).")

    def options(self) -> dict:
        size = self.input_size.value()
        return {
            "model": self.size_combo.currentText(),
            "checkpoint": self.ckpt_edit.text().strip() or None,
            "backend": self.backend_combo.currentText(),
            "device": self.device_combo.currentText(),
            **({"image_size": size} if size else {}),
            **self._server_options(),
        }

    def _server_options(self) -> dict:
        """``server``/``token`` when the Server field is filled (the model then runs there)."""
        server = self.server_edit.text().strip()
        if not server:
            return {}
        return {"server": server, "token": self.token_edit.text().strip() or None}

    def load(self):
        """Build the Segmenter in a worker thread (the dock shows a busy bar)."""
        kw = self.options()
        self.status.emit(f"Loading {kw['backend']} model ({kw['model']})…")
        self.load_btn.setEnabled(False)
        worker = create_worker(
            Segmenter,
            **kw,
            _connect={
                "returned": self._loaded,
                "errored": self._failed,
                "finished": self._finished,
            },
            _start_thread=False,
        )
        self.worker = worker
        self.busy.emit(True)
        worker.start()

    def _finished(self):
        self.worker = None
        self.load_btn.setEnabled(True)
        self.busy.emit(False)

    def _loaded(self, seg):
        if seg.notice:
            _notify.show_warning(seg.notice)
        self.loaded.emit(seg)

    def _failed(self, exc):
        self.status.emit(f"Model not loaded: {exc}")
        _notify.show_error(f"SAM 2 model not loaded: {exc}")
