"""The Measure panel: per-object volume, area per plane and bounding-box extent of the
output Labels layer in physical units, as a table that can be saved as CSV."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..adapter.measure import describe_units, measure_job
from ..engine.errors import NapariSam2Error
from . import _notify
from ._runner import BackgroundRun


def _is_medical(layer) -> bool:
    meta = getattr(layer, "metadata", None)
    return isinstance(meta, dict) and bool(meta.get("medical"))


def _cell(value) -> QTableWidgetItem:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return QTableWidgetItem(text)


class MeasurePanel(QGroupBox):
    """*Measure* fills a table (one row per object, per time point for time-lapses) from a
    background worker; *Save CSV…* writes it, with the per-plane areas of 3-D labels next
    to it.  :attr:`measured` carries each new table."""

    OPEN_BY_DEFAULT = staticmethod(_is_medical)  # lesion volumes: the radiologist's report
    measured = Signal(object)  # the Measurements, once shown

    def __init__(self, dock):
        super().__init__("Measure", dock)
        self.dock = dock
        self.result = None  # the last Measurements
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.measure_btn = QPushButton("Measure")
        self.measure_btn.setToolTip(
            "Volume (mL for mm, µm³ for µm), area per plane and bounding-box extent of each "
            "object of the output Labels layer, from its voxel size"
        )
        self.save_btn = QPushButton("Save CSV…")
        self.save_btn.setEnabled(False)
        row.addWidget(self.measure_btn)
        row.addWidget(self.save_btn)
        lay.addLayout(row)
        self.units_label = QLabel("")
        self.units_label.setWordWrap(True)
        lay.addWidget(self.units_label)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(120)
        lay.addWidget(self.table)
        self.measure_btn.clicked.connect(lambda: self.measure())
        self.save_btn.clicked.connect(lambda: self.save_csv())
        self.runner = BackgroundRun(self, dock.set_status, self.measure_btn)

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def measure(self) -> bool:
        """Measure the dock's Labels layer in a worker; the table shows when it is done
        (:attr:`measured`).  Returns False when there is nothing to measure."""
        try:
            job = measure_job(self.dock.session.labels_layer)
        except NapariSam2Error as e:
            _notify.show_warning(str(e))
            self.dock.set_status(str(e))
            return False
        self.runner.start(
            lambda cancel, progress: job(),
            self._show,
            failed="Measurement failed",
            cancellable=False,
            reports_progress=False,
            status="Measuring…",
        )
        return True

    def _show(self, m) -> None:
        self.result = m
        self.table.clear()
        self.table.setColumnCount(len(m.columns))
        self.table.setHorizontalHeaderLabels(list(m.columns))
        self.table.setRowCount(len(m.rows))
        for r, values in enumerate(m.rows):
            for c, value in enumerate(values):
                self.table.setItem(r, c, _cell(value))
        self.table.resizeColumnsToContents()
        self.units_label.setText(f"{len(m)} object(s); {describe_units(m)}.")
        self.save_btn.setEnabled(True)
        self.dock.set_status(f"Measured {len(m)} object(s) ({describe_units(m)}).")
        self.measured.emit(m)

    def save_csv(self, path: str | None = None) -> list[Path]:
        """Write the last table (and ``<name>_planes.csv`` for 3-D labels); returns the
        paths.  The button is enabled once a table is shown."""
        m = self.result
        if m is None:
            _notify.show_warning("Measure first: there is no table to save.")
            return []
        if path is None:
            layer = self.dock.session.labels_layer
            path, _ = QFileDialog.getSaveFileName(
                self, "Save measurements", f"{layer.name}.csv", "CSV (*.csv)"
            )
            if not path:
                return []
        out = Path(path).with_suffix(".csv")
        try:
            written = [m.to_csv(out)]
            if m.plane_columns:
                written.append(m.planes_to_csv(out.with_name(f"{out.stem}_planes.csv")))
        except OSError as e:
            _notify.show_warning(f"Measurements not saved: {e}")
            return []
        self.dock.set_status("Saved " + ", ".join(p.name for p in written))
        return written

    def close_panel(self) -> None:
        """A running measurement is dropped (nothing else is connected outside)."""
        self.runner.close()
