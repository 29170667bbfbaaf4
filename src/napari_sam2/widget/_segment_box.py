"""The dock's Segment section: its options and action buttons (the dock connects them)."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout


class SegmentBox(QGroupBox):
    """Live / overwrite / refine options; Segment, Commit, Next object, Next candidate,
    Cancel and Export.  The widgets named in :attr:`NAMES` are also the dock's attributes."""

    NAMES = (
        "live_check",
        "overwrite_check",
        "refine_check",
        "segment_btn",
        "commit_btn",
        "next_btn",
        "candidate_btn",
        "cancel_btn",
        "export_btn",
    )

    def __init__(self, parent=None):
        super().__init__("Segment", parent)
        lay = QVBoxLayout(self)
        self.live_check = QCheckBox("Live: re-run on every prompt change")
        self.overwrite_check = QCheckBox("Overwrite other objects' pixels")
        self.refine_check = QCheckBox("Refine selected label (same ID) — Ctrl-click picks")
        self.refine_check.setToolTip(
            "Ctrl-click (Cmd-click on macOS) an object on the prompt Points layer, or on the "
            "Labels layer in pan/zoom or pick mode (in paint mode the click paints)."
        )
        for w in (self.live_check, self.overwrite_check, self.refine_check):
            lay.addWidget(w)
        self.segment_btn = QPushButton("Segment [S]")
        self.commit_btn = QPushButton("Commit [C]")
        self.next_btn = QPushButton("Next object [N]")
        self.candidate_btn = QPushButton("Next candidate")
        self.cancel_btn = QPushButton("Cancel")
        self.export_btn = QPushButton("Export PNGs…")
        for buttons in (
            (self.segment_btn, self.commit_btn, self.next_btn),
            (self.candidate_btn, self.cancel_btn, self.export_btn),
        ):
            row = QHBoxLayout()
            for b in buttons:
                row.addWidget(b)
            lay.addLayout(row)
