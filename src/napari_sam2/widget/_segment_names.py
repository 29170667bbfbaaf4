"""Segment names dialog: label, category and type (SNOMED CT) per label ID for DICOM SEG.

The names live in the Labels layer's ``metadata["segments"]`` (``{ID: {"label",
"category", "type"}}``), where the DICOM SEG writer reads them and where a SEG read back
puts them, so they survive a save → open → correct → save cycle.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..io.medical.segment_codes import SegmentSpecError, default_label, parse_segments
from . import _notify

COLUMNS = ("ID", "Name", "Category", "Type")
HINT = (
    "Category and type are SNOMED CT concepts: a name DICOM knows (Liver, Neoplasm, Cell, "
    "Tissue, Anatomical Structure…) or SCHEME:CODE:Meaning. Empty = Tissue."
)


def label_ids(layer) -> list[int]:
    """The IDs painted in a Labels layer (its full-resolution data)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return [int(i) for i in np.unique(np.asarray(data)) if i > 0]


class SegmentNamesDialog(QDialog):
    """A table of the layer's label IDs with editable name, category and type."""

    def __init__(self, layer, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Segment names of '{layer.name}'")
        self.layer = layer
        known = dict(layer.metadata.get("segments") or {})
        known = {int(k): v for k, v in known.items()}
        ids = sorted(set(label_ids(layer)) | set(known))
        self.table = QTableWidget(len(ids), len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for row, label_id in enumerate(ids):
            spec = known.get(label_id) or {}
            if isinstance(spec, str):
                spec = {"label": spec}
            values = (str(label_id), spec.get("label", ""), spec.get("category", ""),
                      spec.get("type", ""))  # fmt: skip
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if col == 0:
                    item.setFlags(item.flags() & ~item.flags().ItemIsEditable)
                self.table.setItem(row, col, item)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box = QVBoxLayout(self)
        box.addWidget(self.table)
        hint = QLabel(HINT)
        hint.setWordWrap(True)
        box.addWidget(hint)
        box.addWidget(buttons)

    def mapping(self) -> dict[int, dict[str, str]]:
        """The table as ``{ID: {"label", "category", "type"}}`` (empty names left out)."""
        out = {}
        for row in range(self.table.rowCount()):
            label_id = int(self.table.item(row, 0).text())
            name, category, kind = (self.table.item(row, c).text().strip() for c in (1, 2, 3))
            if name or category or kind:
                entry = {"label": name or default_label(label_id)}
                entry.update({k: v for k, v in (("category", category), ("type", kind)) if v})
                out[label_id] = entry
        return out

    def accept(self) -> None:
        """Validate the codes; store them on the layer, or say what is wrong and stay open."""
        try:
            specs = parse_segments(self.mapping())
        except SegmentSpecError as exc:
            _notify.show_warning(f"Segment names not kept: {exc}")
            return
        self.layer.metadata = {
            **self.layer.metadata,
            "segments": {k: spec.as_dict() for k, spec in sorted(specs.items())},
        }
        super().accept()
