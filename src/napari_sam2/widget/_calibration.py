"""The bf16/fp32 measurement in the dock's background (engine/runtime/auto_precision.py).

Started after the model's warm-up when :func:`~napari_sam2.engine.runtime.auto_precision.
needs_calibration` says so (``auto`` precision, a SAM 2 model on a CPU with native bf16,
no verdict saved yet).  Like warm-up and prefetch it gives way to the user: any user
action cancels it between two encoder blocks, and it starts again (from the beginning, it
takes a few encodes) once the dock has been idle for :data:`IDLE_MS`.  Its encodes carry
their own precision, so a click meanwhile is never computed in the wrong one.  The verdict
is applied on the main thread and the status line says it.
"""

from __future__ import annotations

import threading

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer

from ..engine.errors import Cancelled
from ..engine.runtime import auto_precision as _ap

IDLE_MS = 2000  # the user has left the dock alone this long: measure (again)


class BackgroundCalibration(QObject):
    """One dock's precision measurement (``dock.session.segmenter``)."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.runs = 0  # measurements started
        self.results: list = []  # the applied verdicts
        self.errors: list = []  # what stopped a run (Cancelled by the user, mostly)
        self._cancel = threading.Event()
        self._worker = None
        self._pending = False  # a measurement is wanted (started or waiting for idle)
        self._timer = QTimer(self, singleShot=True, interval=IDLE_MS)
        self._timer.timeout.connect(self._idle)

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start_if_needed(self, seg=None) -> bool:
        """After a warm-up: measure now when the segmenter needs a verdict."""
        seg = seg or self.dock.session.segmenter
        if seg is None or self.dock.closed or not _ap.needs_calibration(seg):
            return False
        self._pending = True
        self._start(seg)
        return True

    def want(self, seg=None) -> None:
        """Measure once the dock is idle (the warm-up was cancelled by the user)."""
        seg = seg or self.dock.session.segmenter
        if seg is not None and not self.dock.closed and _ap.needs_calibration(seg):
            self._pending = True
            self._timer.start()

    def _start(self, seg) -> None:
        if self.running:
            return
        ev = self._cancel = threading.Event()
        self.runs += 1
        self.dock.set_status(
            f"{self.dock.describe()} · measuring fp32 vs bf16 in the background…"
        )
        self._worker = create_worker(
            _ap.measure,
            seg,
            cancel=ev,
            _connect={
                "returned": lambda cal: self._measured(seg, cal),
                "errored": self._failed,
                "finished": self._done,
            },
            _start_thread=False,
        )
        self._worker.start()

    def _measured(self, seg, cal) -> None:
        self._pending = False
        if self.dock.closed or seg is not self.dock.session.segmenter:
            return  # the model changed meanwhile: its own warm-up decides
        info = _ap.apply(seg, cal)
        self.results.append(cal)
        self.dock.set_status(f"{self.dock.describe()} · precision {info.text()}")

    def _failed(self, exc) -> None:
        self.errors.append(exc)
        if not isinstance(exc, Cancelled):
            self._pending = False  # a real failure: fp32 stays, no retry loop

    def _done(self) -> None:
        self._worker = None
        if self._pending and not self.dock.closed:
            self._timer.start()  # cancelled: again once the dock is idle

    def user_action(self) -> None:
        """A click, Segment or Commit: stop now, resume when idle."""
        self._cancel.set()
        if self._pending:
            self._timer.start()

    def _idle(self) -> None:
        dock = self.dock
        if not self._pending or dock.closed or self.running:
            return
        if dock.busy or dock.committer.running:
            self._timer.start()  # the user's work first
            return
        seg = dock.session.segmenter
        if seg is None or not _ap.needs_calibration(seg):
            self._pending = False
            return
        self._start(seg)

    def close(self) -> None:
        self._pending = False
        self._timer.stop()
        self._cancel.set()
