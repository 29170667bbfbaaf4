"""The "Segment everything" panel: automatic instance segmentation of the viewed plane or
of every plane, in the background, written into the output labels as one undo step."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..adapter.everything import apply_everything, compute_everything, prepare_everything
from ..engine.errors import NapariSam2Error
from . import _notify
from ._runner import BackgroundRun, run_controls

SCOPES = (("This plane", False), ("All planes", True))


def _dspin(lo, hi, value, step, decimals=2, tip=""):
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setDecimals(decimals)
    w.setSingleStep(step)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def _ispin(lo, hi, value, tip=""):
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w


class EverythingPanel(QGroupBox):
    """Settings, Run/Cancel and a progress bar; the result is one undo step."""

    OPEN_BY_DEFAULT = False  # minutes per plane on a CPU: not a daily click

    def __init__(self, dock, parent=None):
        super().__init__("Segment everything", parent)
        self.dock = dock
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.scope = QComboBox()
        for text, flag in SCOPES:
            self.scope.addItem(text, flag)
        self.points_per_side = _ispin(1, 128, 32, "SAM 2: clicks per side of the grid")
        self.pred_iou = _dspin(0, 1, 0.8, 0.05, tip="SAM 2: minimum predicted mask quality")
        self.stability = _dspin(0, 1, 0.95, 0.01, tip="SAM 2: minimum mask stability")
        area_tip = "in the image's world units² (pixels when its scale is 1); 0 = no limit"
        self.min_area = _dspin(0, 1e12, 0, 10, 3, "Smallest object " + area_tip)
        self.max_area = _dspin(0, 1e12, 0, 100, 3, "Largest object " + area_tip)
        self.min_area.setSpecialValueText("no minimum")  # shown at 0, which means that
        self.max_area.setSpecialValueText("no maximum")
        for label, w in (
            ("Planes", self.scope),
            ("Points per side", self.points_per_side),
            ("Min quality", self.pred_iou),
            ("Min stability", self.stability),
            ("Min area", self.min_area),
            ("Max area", self.max_area),
        ):
            form.addRow(label, w)
        lay.addLayout(form)

        self.advanced = QCheckBox("Advanced")
        self.advanced_box = QWidget()
        adv = QFormLayout(self.advanced_box)
        self.points_per_batch = _ispin(1, 4096, 256, "SAM 2: clicks decoded at once")
        self.box_nms = _dspin(0, 1, 0.7, 0.05, tip="SAM 2: box IoU above which duplicates go")
        self.hole_area = _dspin(0, 1e12, 0, 10, 3, "Fill holes up to this area (world units²)")
        self.sigma = _dspin(0, 20, 1.0, 0.5, tip="Classical: smoothing (pixels)")
        self.split_h = _dspin(0, 50, 0.7, 0.1, tip="Classical: depth needed to split blobs")
        self.tile_size = _ispin(0, 1 << 16, 0, "Tile planes larger than this (0 = automatic)")
        self.tile_overlap = _ispin(0, 4096, 128, "Tile overlap (pixels), > object size")
        for label, w in (
            ("Points per batch", self.points_per_batch),
            ("Box NMS", self.box_nms),
            ("Fill holes ≤", self.hole_area),
            ("Smoothing σ", self.sigma),
            ("Split depth", self.split_h),
            ("Tile size", self.tile_size),
            ("Tile overlap", self.tile_overlap),
        ):
            adv.addRow(label, w)
        self.advanced_box.setVisible(False)
        self.advanced.toggled.connect(self.advanced_box.setVisible)
        lay.addWidget(self.advanced)
        lay.addWidget(self.advanced_box)

        row, self.run_btn, self.cancel_btn, self.progress = run_controls(
            "Segment everything", "Find every object and write them into the output labels"
        )
        lay.addLayout(row)
        lay.addWidget(self.progress)
        self.runner = BackgroundRun(
            self,
            dock.set_status,
            self.run_btn,
            self.cancel_btn,
            self.progress,
            cancelling="Segment everything: cancelling…",
        )
        self.run_btn.clicked.connect(self.run)

    # ------------------------------------------------------------ settings
    def settings(self) -> dict:
        s = {
            "points_per_side": self.points_per_side.value(),
            "pred_iou_thresh": self.pred_iou.value(),
            "stability_score_thresh": self.stability.value(),
            "min_area": self.min_area.value(),
            "max_area": self.max_area.value() or None,
            "points_per_batch": self.points_per_batch.value(),
            "box_nms_thresh": self.box_nms.value(),
            "hole_area": self.hole_area.value(),
            "sigma": self.sigma.value(),
            "split_h": self.split_h.value(),
            "tile_overlap": self.tile_overlap.value(),
        }
        if self.tile_size.value():
            s["tile_size"] = self.tile_size.value()
        return s

    @property
    def busy(self) -> bool:
        return self.runner.busy

    # ------------------------------------------------------------- actions
    def run(self):
        if self.busy:
            _notify.show_info("Segment everything is already running.")
            return
        session = self.dock.session
        try:
            req = prepare_everything(
                session, all_planes=bool(self.scope.currentData()), settings=self.settings()
            )
        except NapariSam2Error as e:
            _notify.show_warning(str(e))
            return
        what = "every plane" if req.plane == "all" else f"plane {req.plane or '(2D)'}"
        clicks = self.points_per_side.value() ** 2  # the cost, said before it starts
        what += f"… With SAM 2 on a CPU this takes minutes per plane ({clicks} clicks each)"
        self.runner.start(
            lambda cancel, progress: compute_everything(session, req, progress),
            lambda edits: self._done(req, edits),
            failed="Segment everything failed",
            cancelled="Segment everything cancelled: the labels are unchanged.",
            cancel=req.cancel,
            status=f"Segment everything: {what}; Cancel stops it.",
        )

    def cancel(self):
        self.runner.cancel()

    def _done(self, req, edits):
        try:
            ids = apply_everything(self.dock.session, req, edits)
        except NapariSam2Error as e:
            _notify.show_warning(str(e))
            self.dock.set_status(str(e))
            return
        for note in self.dock.session.notices:
            _notify.show_info(note)
        self.dock.session.notices.clear()
        n = len(ids)
        self.dock.set_status(
            f"Segment everything: {n} object{'s' * (n != 1)} written"
            + (f" (IDs {min(ids)}–{max(ids)}); Ctrl-Z undoes them." if ids else ".")
        )

    def close_panel(self):
        """Stop a running computation; nothing else is connected outside the panel."""
        self.runner.close()
