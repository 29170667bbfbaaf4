"""The panels' background runner (widget/_runner.py): a real napari worker thread, real
Qt buttons and progress bar; no model."""

from __future__ import annotations

import threading

import pytest
from qtpy.QtWidgets import QProgressBar, QPushButton, QWidget

from napari_sam2.engine.errors import Cancelled
from napari_sam2.widget import _notify
from napari_sam2.widget._runner import BackgroundRun
from widget_helpers import TIMEOUT


@pytest.fixture
def rig(qtbot, monkeypatch):
    """A runner on a parent widget with Run/Cancel buttons and a progress bar; records
    the status lines, error notifications and callbacks it gives."""
    parent = QWidget()
    qtbot.addWidget(parent)
    run_btn, cancel_btn, bar = QPushButton("Run"), QPushButton("Cancel"), QProgressBar()
    # the parent stays referenced (qtbot holds widgets weakly): the runner dies with it
    rec = {"status": [], "errors": [], "progress": [], "threads": [], "finished": 0, "w": parent}
    monkeypatch.setattr(_notify, "show_error", rec["errors"].append)

    def on_progress(done, total):
        rec["progress"].append((done, total))
        rec["threads"].append(threading.current_thread())

    def on_finished():
        rec["finished"] += 1

    runner = BackgroundRun(
        parent,
        rec["status"].append,
        run_btn,
        cancel_btn,
        bar,
        cancelling="Job: cancelling…",
        on_progress=on_progress,
        on_finished=on_finished,
    )
    return runner, run_btn, cancel_btn, bar, rec


def test_progress_arrives_on_the_main_thread_and_the_result_is_delivered(qtbot, rig):
    runner, run_btn, cancel_btn, bar, rec = rig
    gate, done, worker_threads = threading.Event(), [], []

    def job(cancel, progress):
        worker_threads.append(threading.current_thread())
        for i in range(1, 4):
            progress(i, 3)
        assert gate.wait(TIMEOUT / 1000)
        return 42

    assert cancel_btn.isEnabled() is False and run_btn.isEnabled()
    runner.start(job, done.append, failed="Job failed", status="Job: running…")
    assert runner.busy and not run_btn.isEnabled() and cancel_btn.isEnabled()
    assert rec["status"] == ["Job: running…"]
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(job, done.append, failed="Job failed")
    qtbot.waitUntil(lambda: len(rec["progress"]) == 3, timeout=TIMEOUT)
    assert runner.busy and not done  # the job still waits on the gate
    gate.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert done == [42]
    assert rec["progress"] == [(1, 3), (2, 3), (3, 3)]
    main = threading.main_thread()
    assert worker_threads[0] is not main and all(t is main for t in rec["threads"])
    assert bar.maximum() == 3 and bar.value() == 3
    assert run_btn.isEnabled() and not cancel_btn.isEnabled()
    assert rec["finished"] == 1 and rec["errors"] == []
    assert rec["status"] == ["Job: running…"]  # the panel's on_done writes the outcome


def test_cancel_is_a_quiet_status_not_an_error(qtbot, rig):
    runner, run_btn, cancel_btn, bar, rec = rig
    started, done = threading.Event(), []

    def job(cancel, progress):
        started.set()
        assert cancel.wait(TIMEOUT / 1000)
        raise Cancelled("stopped between two planes")

    runner.start(job, done.append, failed="Job failed", cancelled="Job cancelled: unchanged.")
    assert started.wait(TIMEOUT / 1000)
    cancel_btn.click()  # the Cancel button reaches the job's event
    assert rec["status"][-1] == "Job: cancelling…"
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert rec["status"][-1] == "Job cancelled: unchanged."
    assert rec["errors"] == [] and done == []
    assert run_btn.isEnabled() and not cancel_btn.isEnabled() and rec["finished"] == 1
    # the default text, and the event the job already checks
    own = threading.Event()
    runner.start(
        lambda cancel, progress: (cancel.wait(5), cancel is own)[1],
        done.append,
        failed="Job failed",
        cancel=own,
    )
    runner.cancel()
    assert own.is_set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert done == [True]


def test_cancelled_default_status(qtbot, rig):
    runner, *_, rec = rig

    def job(cancel, progress):
        raise Cancelled("x")

    runner.start(job, lambda r: None, failed="Job failed")
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert rec["status"] == ["Cancelled."] and rec["errors"] == []


def test_an_exception_is_an_error_notification_and_run_comes_back(qtbot, rig):
    runner, run_btn, cancel_btn, bar, rec = rig
    done = []

    def job(cancel, progress):
        progress(1, 4)
        raise ValueError("boom")

    runner.start(
        job, done.append, failed="Job failed", failed_status="Job failed (labels unchanged)"
    )
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert rec["errors"] == ["Job failed: boom"]
    assert rec["status"] == ["Job failed (labels unchanged): boom"]
    assert done == [] and rec["finished"] == 1
    assert run_btn.isEnabled() and not cancel_btn.isEnabled()
    # Run works again: a new job starts with an empty bar
    runner.start(lambda cancel, progress: "ok", done.append, failed="Job failed")
    assert bar.value() == 0 and bar.maximum() == 1
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert done == ["ok"]


def test_not_cancellable_job_keeps_cancel_disabled_and_the_bar(qtbot, rig):
    runner, run_btn, cancel_btn, bar, rec = rig
    bar.setRange(0, 7)
    bar.setValue(7)  # the previous job's result
    gate = threading.Event()
    runner.start(
        lambda cancel, progress: gate.wait(5),
        lambda r: None,
        failed="Load failed",
        cancellable=False,
        reports_progress=False,
    )
    assert not run_btn.isEnabled() and not cancel_btn.isEnabled()
    assert bar.value() == 7 and bar.maximum() == 7
    gate.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert run_btn.isEnabled()


def test_close_stops_the_job_and_drops_its_result(qtbot, rig):
    runner, run_btn, cancel_btn, bar, rec = rig
    seen, done = [], []

    def job(cancel, progress):
        seen.append(cancel)
        assert cancel.wait(TIMEOUT / 1000)
        return "late"

    runner.start(job, done.append, failed="Job failed")
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT)
    runner.close()
    assert seen[0].is_set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert done == [] and rec["errors"] == [] and rec["finished"] == 1
    assert run_btn.isEnabled()
    # a closed panel can be docked again: the next job runs normally
    runner.start(lambda cancel, progress: 7, done.append, failed="Job failed")
    qtbot.waitUntil(lambda: not runner.busy, timeout=TIMEOUT)
    assert done == [7]
