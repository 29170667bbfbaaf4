"""A panel's long job in the background: one napari worker with progress, Cancel and messages.

The job is a function ``fn(cancel, progress)``: ``cancel`` is a :class:`threading.Event`
it checks, ``progress(done, total)`` may be called from the worker thread.  What it returns,
a :class:`~napari_sam2.engine.errors.Cancelled` (a quiet status line) or any other exception
(a napari error notification) comes back on the main thread.  Used by the "Segment
everything", Propagate and Fine-tune panels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton

from ..engine.errors import Cancelled
from . import _notify


def run_controls(run_text: str, tip: str = "") -> tuple:
    """A Run button (stretching) and a Cancel button in a row, and an empty progress bar:
    ``(row, run_btn, cancel_btn, bar)`` for a panel's layout and its :class:`BackgroundRun`."""
    run_btn, cancel_btn = QPushButton(run_text), QPushButton("Cancel")
    run_btn.setToolTip(tip)
    row = QHBoxLayout()
    row.addWidget(run_btn, 1)
    row.addWidget(cancel_btn)
    bar = QProgressBar()
    bar.setRange(0, 1)
    bar.setValue(0)
    return row, run_btn, cancel_btn, bar


@dataclass
class _Job:
    on_done: Callable
    failed: str
    failed_status: str
    cancelled: str
    cancel: threading.Event
    dropped: bool = False  # the panel was closed meanwhile: no callback, no message


class BackgroundRun(QObject):
    """Runs one job at a time for a panel; :attr:`progressed` carries its progress.

    While a job runs ``run_btn`` is disabled and ``cancel_btn`` enabled (Cancel calls
    :meth:`cancel`); ``progress_bar`` (a ``QProgressBar``) starts empty and follows the
    progress, as does ``on_progress(done, total)``.  ``on_finished()`` runs after every
    job, whatever its end.  ``set_status`` is the dock's status line.
    """

    progressed = Signal(int, int)  # (done, total): emitted in the worker, queued to main

    def __init__(
        self,
        parent,
        set_status: Callable[[str], None],
        run_btn=None,
        cancel_btn=None,
        progress_bar=None,
        *,
        cancelling: str = "Cancelling…",
        on_progress: Callable[[int, int], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ):
        super().__init__(parent)
        self._set_status = set_status
        self.run_btn, self.cancel_btn, self.progress_bar = run_btn, cancel_btn, progress_bar
        self.cancelling = cancelling
        self._on_progress = on_progress
        self._on_finished = on_finished
        self.worker = None
        self._job: _Job | None = None
        self.progressed.connect(self._progressed)
        if cancel_btn is not None:
            cancel_btn.setEnabled(False)
            cancel_btn.clicked.connect(lambda *_: self.cancel())

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def start(
        self,
        fn: Callable,
        on_done: Callable,
        *,
        failed: str,
        failed_status: str | None = None,
        cancelled: str = "Cancelled.",
        cancel: threading.Event | None = None,
        cancellable: bool = True,
        reports_progress: bool = True,
        status: str | None = None,
    ) -> None:
        """Run ``fn(cancel, progress)`` in a worker; ``on_done(result)`` on the main thread.

        A failure shows ``"{failed}: {exc}"`` as an error notification and
        ``"{failed_status}: {exc}"`` (default: the same) in the status line; a
        :class:`Cancelled` shows ``cancelled`` in the status line only.  ``cancel`` is the
        event the job already checks (default: a new one); ``status`` is shown first.
        ``cancellable=False``: Cancel stays disabled; ``reports_progress=False``: the
        progress bar keeps what it shows (e.g. the previous job's result).
        """
        if self.busy:
            raise RuntimeError("a background job of this panel is already running")
        self._job = _Job(
            on_done, failed, failed_status or failed, cancelled, cancel or threading.Event()
        )
        if self.progress_bar is not None and reports_progress:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
        self._enable(running=True, cancellable=cancellable)
        if status:
            self._set_status(status)
        self.worker = create_worker(
            fn,
            self._job.cancel,
            self._report,
            _connect={"returned": self._done, "errored": self._failed, "finished": self._finished},
            _start_thread=False,
        )
        self.worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop (it ends with :class:`Cancelled` or its own report)."""
        if self._job is not None:
            self._job.cancel.set()
        self._set_status(self.cancelling)

    def close(self) -> None:
        """The panel closes: stop the job; what it still returns is dropped silently."""
        if self._job is not None:
            self._job.dropped = True
            self._job.cancel.set()
        if self.worker is not None:
            self.worker.quit()

    # ------------------------------------------------------------ internals
    def _enable(self, running: bool, cancellable: bool = True) -> None:
        with suppress(RuntimeError):  # a button already deleted (the viewer closed)
            if self.run_btn is not None:
                self.run_btn.setEnabled(not running)
            if self.cancel_btn is not None:
                self.cancel_btn.setEnabled(running and cancellable)

    def _report(self, done, total) -> None:  # worker thread
        self.progressed.emit(int(done), int(total))

    def _progressed(self, done: int, total: int) -> None:
        if self._job is None or self._job.dropped:
            return
        if self.progress_bar is not None:
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(done)
        if self._on_progress is not None:
            self._on_progress(done, total)

    def _done(self, result) -> None:
        job = self._job
        if job is not None and not job.dropped:
            job.on_done(result)

    def _failed(self, exc) -> None:
        job = self._job
        if job is None or job.dropped:
            return
        if isinstance(exc, Cancelled):
            self._set_status(job.cancelled)
            return
        _notify.show_error(f"{job.failed}: {exc}")
        self._set_status(f"{job.failed_status}: {exc}")

    def _finished(self) -> None:
        self.worker = None
        self._job = None
        self._enable(running=False)
        if self._on_finished is not None:
            with suppress(RuntimeError):
                self._on_finished()
