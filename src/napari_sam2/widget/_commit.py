"""Commit [C] without freezing the GUI (see :mod:`napari_sam2.adapter.commit`).

Small objects are written at once on the main thread (a few ms).  Large ones are planned in
a worker and written in bands across event-loop turns, as one undo step; if the labels
change meanwhile the commit is planned again (once), else refused with a notice.

A commit is never lost to a Segment still running (S then C at once): Commit then waits
for that Segment's result and commits it.  If the prompts changed since that Segment was
pressed, Segment runs once more and its result is committed.  Cancel stops both; a
Segment that fails or is stopped drops the waiting commit with a notice.  Nor is it lost
to a large commit still being written: Commit then queues the preview it was pressed for
and writes it next.  A result a Commit was pressed for is written into its own plane,
also when the user has moved to another plane meanwhile.
"""

from __future__ import annotations

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer, Signal

from ..adapter.commit import (
    STEP_PX,
    ChunkedWriter,
    CommitConflict,
    begin_commit,
    commit_preview,
    finish_job,
    plan_commit,
)
from ..engine.errors import NapariSam2Error
from . import _notify

SYNC_PX = 200_000  # mask pixels up to which a commit is written at once (< ~30 ms)
MAX_ATTEMPTS = 2  # plans per commit when the labels change meanwhile
WAITING = "Commit waits for the segmentation to finish (Cancel stops both)…"
QUEUED = "Commit queued: it is written when the commit in progress ends."


class Committer(QObject):
    """The dock's commit action.  ``sync_px``/``step_px``/``chunk_px`` are tunable (tests)."""

    planned = Signal(object)  # a large commit's plan arrived (the job), before any write
    stepped = Signal(object)  # the writer wrote a step (the ChunkedWriter), before the next

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.sync_px = SYNC_PX
        self.step_px = STEP_PX
        self.chunk_px = None  # None: adapter.commit.CHUNK_PX
        self.job = None  # the commit in progress (planning or writing)
        self.writer = None
        self.worker = None
        self.history: list[dict] = []  # per finished async commit: steps, chunks, pixels
        self.awaiting = None  # the Segment request whose result a Commit waits for
        self.queued: list = []  # results to commit, in order, once the one in progress ends

    @property
    def running(self) -> bool:
        return self.job is not None

    def commit(self) -> None:
        """Commit [C]: the preview now, the result of a Segment still running, or (while a
        commit is being written) the preview next."""
        dock = self.dock
        if self.awaiting is not None:
            dock.set_status(WAITING)
            return
        req = dock.segment_in_flight()
        if req is not None:
            self._await(req)
            return
        res = dock.session.result
        if self.running:
            if res is None or res is self.job.result or any(r is res for r in self.queued):
                dock.set_status("A commit is still being written: wait a moment.")
            else:
                self.queued.append(res)
                dock.set_status(QUEUED)
            return
        self._commit(res)

    def _commit(self, res, any_plane: bool = False) -> None:
        """Commit ``res``; ``any_plane``: into its own plane even if another is viewed."""
        if self.running:  # a result that came while a commit is written: the next one
            self.queued.append(res)
            return
        tiled = res is not None and res.info.get("placement") is not None  # bbox-local already
        if res is None or tiled or sum(int(m.sum()) for m in res.masks()) <= self.sync_px:
            self._commit_now(res, any_plane)
            return
        try:
            job = begin_commit(self.dock.session, res, any_plane=any_plane)
        except NapariSam2Error as e:
            self._warn(str(e))
            return
        self._plan(job)

    def _commit_now(self, res, any_plane: bool) -> None:
        try:
            ids = commit_preview(self.dock.session, res, any_plane=any_plane)
        except NapariSam2Error as e:
            self._warn(str(e))
            return
        self._done(ids)

    def _ended(self) -> None:
        """A commit in progress ended (written, refused or failed): a queued one runs."""
        while self.queued and not self.running and not self.dock.closed:
            self._commit(self.queued.pop(0), any_plane=True)

    # ------------------------------------------------- waiting for a Segment
    def _await(self, req) -> None:
        """Commit the result of ``req`` (running or queued) when it comes; if the prompts
        changed since it was asked, Segment once more and commit that result."""
        dock = self.dock
        if not dock.session.matches(req):
            dock.segment()  # queued after the running one; says why when it cannot
            newer = dock.segment_in_flight()
            if newer is None or newer is req:
                return
            req = newer
        self.awaiting = req
        dock.set_status(WAITING)

    def segmented(self, result) -> None:
        """The dock's Segment returned ``result``: commit it if a Commit waits for it (also
        when a newer request made it no longer the preview: it is what Commit meant)."""
        if self.awaiting is None or result.request is not self.awaiting:
            return
        self.awaiting = None
        if result.request.image_layer is not self.dock.session.image_layer:
            self._warn("Nothing committed: the image changed while segmenting.")
            return
        self._commit(result, any_plane=True)

    def segment_ended(self, req, why: str) -> None:
        """``req`` ended without a result (failed or stopped): a Commit waiting for it is
        dropped with a notice."""
        if self.awaiting is not None and req is self.awaiting:
            self.awaiting = None
            self._warn(f"Nothing committed: {why}")

    def superseded(self, old, new) -> None:
        """A queued Segment ``old`` was replaced by ``new`` before it ran: a Commit waiting
        for it waits for ``new`` (the prompts as they are now)."""
        if self.awaiting is not None and old is self.awaiting:
            self.awaiting = new

    def waits_for(self, req) -> bool:
        """Does a Commit wait for the result of ``req`` (which must then not be stopped)?"""
        return self.awaiting is not None and req is self.awaiting

    def stop_waiting(self, why: str | None = None) -> None:
        """Cancel (or ``why``, said to the user): a Commit waiting for a Segment, or
        queued, is dropped."""
        dropped = self.awaiting is not None or bool(self.queued)
        self.awaiting = None
        self.queued = []
        if dropped and why:
            self._warn(f"Nothing committed: {why}")

    def _done(self, ids) -> None:
        dock = self.dock
        if dock.session.result is None:  # (a newer preview made meanwhile stays)
            dock.preview.clear()
        while dock.session.notices:
            _notify.show_info(dock.session.notices.pop(0))
        done = f"Wrote label(s) {', '.join(map(str, ids))}. " if ids else "Nothing written. "
        dock.set_status(done + dock.describe())

    # --------------------------------------------------------------- async
    def _plan(self, job) -> None:
        job.attempts += 1
        self.job = job
        kw = {} if self.chunk_px is None else {"chunk_px": self.chunk_px}
        self.dock.set_status("Committing: planning the write…")
        self.worker = create_worker(
            plan_commit,
            job,
            **kw,
            _connect={"returned": self._planned, "errored": self._failed},
            _start_thread=False,
        )
        self.worker.start()

    def _planned(self, job) -> None:
        self.worker = None
        if self.dock.closed or job is not self.job:
            self.job = None
            return
        session = self.dock.session
        self.planned.emit(job)
        self.writer = ChunkedWriter(job, lambda: session.labels_version, self.step_px)
        self._step()

    def _step(self) -> None:
        w = self.writer
        if w is None:
            return
        try:
            if not w.done:
                w.step()
                self.stepped.emit(w)
            if not w.done:
                QTimer.singleShot(0, self._step)  # let the event loop breathe
                return
            ids = w.finish()
        except CommitConflict:
            self._conflict()
            return
        except Exception as e:  # noqa: BLE001 - the writer rolled back; tell the user
            self._reset()
            self._warn(f"Commit failed, the labels are unchanged: {e}")
            self._ended()
            return
        job = self.job
        self.history.append(
            {"steps": w.steps, "chunks": len(job.chunks), "pixels": job.pixels, "ids": ids}
        )
        self._reset()
        self._done(finish_job(self.dock.session, job, ids))
        self._ended()

    def _conflict(self) -> None:
        job = self.job
        self._reset()
        if job.attempts >= MAX_ATTEMPTS or self.dock.closed:
            self._warn("The labels changed during the commit: nothing was written. Commit again.")
            self._ended()
            return
        try:  # plan again against the labels as they are now
            again = begin_commit(self.dock.session, job.result, any_plane=True)
        except NapariSam2Error as e:
            self._warn(f"The labels changed during the commit, nothing was written: {e}")
            self._ended()
            return
        again.attempts = job.attempts
        self._plan(again)

    def _failed(self, exc) -> None:
        self._reset()
        self._warn(f"Commit failed, the labels are unchanged: {exc}")
        self._ended()

    def _warn(self, msg: str) -> None:
        """A warning notification, also kept in the dock's status line."""
        _notify.show_warning(msg)
        self.dock.set_status(msg)

    def _reset(self) -> None:
        self.job = self.writer = self.worker = None

    def close(self) -> None:
        """The dock closes: a commit being written is rolled back, a plan is dropped."""
        self.awaiting = None
        self.queued = []
        if self.writer is not None and self.writer.written:
            self.writer.rollback()
        self._reset()
