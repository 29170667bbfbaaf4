"""The Propagate panel: carry the viewed plane's objects through Z or T, in the background."""

from __future__ import annotations

import contextlib

from napari.utils import progress as napari_progress
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
)

from ..adapter.layers import channel_axis_of
from ..adapter.orientation import orientation_of
from ..adapter.propagate import (
    OBJECTS,
    RANGES,
    add_tracks_layer,
    apply_propagation,
    object_rows,
    plane_axes,
    prepare_propagation,
    propose_axis,
    run_propagation,
    time_estimate,
)
from ..engine.errors import NapariSam2Error
from ..engine.propagation.plan import DIRECTIONS, MODES
from . import _notify
from ._runner import BackgroundRun

ASK = "choose…"


class PropagatePanel(QGroupBox):
    """Axis, direction, range, objects, mode; Propagate / Cancel."""

    @staticmethod
    def not_applicable(image_layer) -> str:
        try:
            axes = plane_axes(image_layer)
        except NapariSam2Error as e:
            return str(e)
        return "" if axes else "the image has no Z or T axis"

    def __init__(self, dock):
        super().__init__("Propagate through Z / T", dock)
        self.dock = dock
        form = QFormLayout(self)
        self.axis_combo = QComboBox()
        self.axis_combo.setToolTip("Proposed from the layer's axis labels (Z or T)")
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(DIRECTIONS)
        self.range_combo = QComboBox()
        self.range_combo.addItems(RANGES)
        self.objects_combo = QComboBox()
        self.objects_combo.addItems(OBJECTS)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        self.mode_combo.setToolTip(
            "auto: SAM 2 video predictor on CUDA, else plane by plane (projection)"
        )
        self.run_btn = QPushButton("Propagate")
        self.cancel_btn = QPushButton("Cancel")
        row = QHBoxLayout()
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        form.addRow("Axis", self.axis_combo)
        form.addRow("Direction", self.direction_combo)
        form.addRow("Range", self.range_combo)
        form.addRow("Objects", self.objects_combo)
        form.addRow("Mode", self.mode_combo)
        form.addRow(row)
        self.tracks_btn = QPushButton("Add tracks")
        self.tracks_btn.setToolTip("Time-lapse: a Tracks layer (track ID = label ID)")
        self.table_btn = QPushButton("Save table…")
        self.table_btn.setToolTip("Per object and frame: area (physical units), centroid")
        self.ctc_btn = QPushButton("Export CTC…")
        self.ctc_btn.setToolTip("Cell Tracking Challenge: maskTTT.tif + res_track.txt")
        row2 = QHBoxLayout()
        for b in (self.tracks_btn, self.table_btn, self.ctc_btn):
            row2.addWidget(b)
        form.addRow(row2)
        self.tracks_btn.clicked.connect(self.add_tracks)
        self.table_btn.clicked.connect(lambda: self.save_table())
        self.ctc_btn.clicked.connect(lambda: self.export_ctc())
        self.run_btn.clicked.connect(self.propagate)
        self.runner = BackgroundRun(
            self,
            dock.set_status,
            self.run_btn,
            self.cancel_btn,
            cancelling="Cancelling propagation…",
            on_progress=self._progressed,
            on_finished=self._finished,
        )
        self.relay = self.runner  # its ``progressed`` signal: (planes done, total)
        self.last_report = None
        self._pbar = None
        dock.image_combo.currentIndexChanged.connect(self.refresh_axes)
        dock.viewer.dims.events.order.connect(self.refresh_axes)  # the displayed axes
        self.refresh_axes()

    # ---------------------------------------------------------------- axes
    def refresh_axes(self, *args) -> None:
        """Fill the axis list from the chosen image; select the proposed axis."""
        self.axis_combo.clear()
        combo = self.dock.image_combo  # the session follows it after this slot runs
        img = combo.value() if hasattr(combo, "value") else self.dock.session.image_layer
        if img is None:
            return
        try:
            orient = orientation_of(self.dock.viewer, img, channel_axis_of(img))  # across the view
            axes = plane_axes(img, orient)
            proposed = propose_axis(img, orient)
        except NapariSam2Error:
            return
        if proposed is None and axes:
            self.axis_combo.addItem(ASK, None)
        for i, label in axes:
            self.axis_combo.addItem(f"{label} ({i})", i)
        if proposed is not None:
            self.axis_combo.setCurrentIndex(proposed)

    def chosen_axis(self):
        return self.axis_combo.currentData()

    # --------------------------------------------------------------- actions
    @property
    def running(self) -> bool:
        return self.runner.busy

    def propagate(self) -> None:
        if self.running:
            _notify.show_info("A propagation is already running: cancel it first.")
            return
        if not self.axis_combo.count():
            self.refresh_axes()
        try:
            job = prepare_propagation(
                self.dock.session,
                axis=self.chosen_axis(),
                direction=self.direction_combo.currentText(),
                range_choice=self.range_combo.currentText(),
                objects=self.objects_combo.currentText(),
                mode=self.mode_combo.currentText(),
            )
        except NapariSam2Error as e:
            _notify.show_warning(str(e))
            self.dock.set_status(str(e))
            return
        estimate = time_estimate(job)  # video mode off CUDA: said before it starts
        if estimate:
            _notify.show_info(estimate)
        self._pbar = napari_progress(total=0, desc="SAM 2: propagating")
        self.runner.start(
            lambda cancel, progress: run_propagation(job, progress),
            lambda report: self._done(job, report),
            failed="Propagation failed",
            failed_status="Propagation failed (labels unchanged)",
            cancel=job.cancel,
            status=(estimate + " " if estimate else "")
            + f"Propagating from plane {job.plane} along axis {job.axis}…",
        )

    def cancel(self) -> None:
        """Stop the run: the Labels layer stays exactly as it was."""
        self.runner.cancel()

    # ---------------------------------------------------------- time-lapse
    def _time_labels(self):
        layer = self.dock.session.labels_layer
        if layer is None:
            _notify.show_warning("No Labels layer chosen.")
            return None, None
        axis = self.chosen_axis()
        if axis is None:
            return layer, 0
        try:  # the list numbers the axes not displayed: the labels' own axis of that entry
            return layer, self.dock.session.orientation().leading[int(axis)]
        except (NapariSam2Error, IndexError):
            return layer, int(axis)

    def add_tracks(self):
        layer, axis = self._time_labels()
        if layer is None:
            return None
        try:
            tracks = add_tracks_layer(self.dock.viewer, layer, axis)
        except NapariSam2Error as e:
            _notify.show_warning(str(e))
            return None
        self.dock.set_status(f"Tracks layer '{tracks.name}' added ({len(tracks.data)} points).")
        return tracks

    def save_table(self, path=None):
        from ..io.exports.tracks import save_table_csv

        layer, axis = self._time_labels()
        if layer is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Object table", "", "CSV (*.csv)")
            if not path:
                return None
        out = save_table_csv(object_rows(layer, axis), path)
        self.dock.set_status(f"Object table saved: {out}")
        return out

    def export_ctc(self, out_dir=None):
        from ..io.exports.tracks import export_ctc

        layer, axis = self._time_labels()
        if layer is None:
            return None
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, "CTC result folder (e.g. 01_RES)")
            if not out_dir:
                return None
        out = export_ctc(layer.data, out_dir, time_axis=axis)
        self.dock.set_status(f"CTC masks and res_track.txt written to {out}")
        return out

    # ------------------------------------------------------------ callbacks
    def _progressed(self, done: int, total: int) -> None:
        if self._pbar is not None:
            if self._pbar.total != total:
                self._pbar.total = total
            self._pbar.n = done
            self._pbar.refresh()
        self.dock.set_status(f"Propagating: {done}/{total} planes")

    def _done(self, job, report) -> None:
        self.last_report = report
        if report.cancelled:
            self.dock.set_status(report.summary())
            return
        if job.labels_layer not in self.dock.viewer.layers:
            self.dock.set_status("The Labels layer was removed meanwhile: nothing was written.")
            return
        n = apply_propagation(job, report)
        if n:
            self.dock.set_status(f"{report.summary()} {n} pixel(s) written (one undo step).")
        else:  # no undo step was recorded: Ctrl-Z would undo the commit before it
            self.dock.set_status(f"{report.summary()} Nothing written: {report.stop_reasons()}.")

    def _finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def close_panel(self) -> None:
        self.runner.close()
        with contextlib.suppress(TypeError, RuntimeError):
            self.dock.image_combo.currentIndexChanged.disconnect(self.refresh_axes)
        with contextlib.suppress(TypeError, RuntimeError, ValueError):
            self.dock.viewer.dims.events.order.disconnect(self.refresh_axes)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
