"""Commit pressed while Segment still runs (S then C at once, issue 22 point 4): the commit
waits for that result and writes it, or segments once more when the prompts changed; the
same with Next object, Refine and the tiled path; Cancel still stops both."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends import ClassicalBackend
from napari_sam2.engine.errors import Cancelled
from napari_sam2.widget._commit import WAITING
from widget_helpers import TIMEOUT, click, discs, ready_widget

LEFT, RIGHT = (40, 40), (40, 75)  # the two discs' centres


class GatedBackend(ClassicalBackend):
    """Classical, but each predict waits for ``gate``: a Segment stays "running" until the
    test opens it.  ``entered`` is set when a predict starts."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.predicts = 0

    def predict(self, embedding, objects, **kw):
        self.predicts += 1
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().predict(embedding, objects, **kw)


@pytest.fixture
def gated(make_napari_viewer, qtbot, monkeypatch):
    """``(image layer, dock, backend, notices)`` on two discs; at the end the gate opens
    and the dock's work finishes before the viewer closes (also when a test failed)."""
    backend = GatedBackend()
    layer, w = ready_widget(make_napari_viewer(), discs(), Segmenter(predictor=backend))
    seen = []
    for name in ("show_info", "show_warning", "show_error"):
        monkeypatch.setattr(f"napari_sam2.widget._notify.{name}", seen.append)
    yield layer, w, backend, seen
    backend.gate.set()
    qtbot.waitUntil(lambda: not w.busy and not w.committer.running, timeout=TIMEOUT)


def _key(layer, key):
    """Press ``key`` on ``layer`` as the user does (the dock's key binding)."""
    next(f for k, f in layer.keymap.items() if str(k) == key)(layer)


def _segment_running(qtbot, w, backend):
    """Press S on the prompt layer; return once the Segment is inside the model."""
    _key(w.session.points_layer, "S")
    qtbot.waitUntil(backend.entered.is_set, timeout=TIMEOUT)
    assert w.busy


def _idle(w):
    return not w.busy and w.committer.awaiting is None and not w.committer.running


def test_s_then_c_commits_the_object(gated, qtbot):
    layer, w, backend, seen = gated
    labels = w.session.labels_layer
    click(w.session.points_layer, layer.data_to_world(LEFT))
    _segment_running(qtbot, w, backend)
    _key(w.session.points_layer, "C")
    assert w.status.text() == WAITING
    assert not labels.data.any()  # nothing yet: the result is not there
    _key(w.session.points_layer, "C")  # pressed twice: still one commit
    backend.gate.set()
    qtbot.waitUntil(lambda: _idle(w) and labels.data.any(), timeout=TIMEOUT)
    assert set(np.unique(labels.data)) == {0, 1}
    assert labels.data[LEFT] == 1 and labels.data[RIGHT] == 0
    assert w.status.text().startswith("Wrote label(s) 1.")
    assert w.session.result is None and w.preview.data is None  # committed, not previewed
    assert backend.predicts == 1 and not any("Nothing to commit" in m for m in seen)
    labels.undo()  # one undo step, as any commit
    assert not labels.data.any()


def test_prompts_changed_before_commit_segments_once_more(gated, qtbot):
    layer, w, backend, _ = gated
    labels, pts = w.session.labels_layer, w.session.points_layer
    click(pts, layer.data_to_world(LEFT))
    _segment_running(qtbot, w, backend)
    pts.data = np.empty((0, 2))  # the user moved the click to the other disc
    click(pts, layer.data_to_world(RIGHT))
    w.commit()
    assert w.status.text() == WAITING
    backend.gate.set()
    qtbot.waitUntil(lambda: _idle(w) and labels.data.any(), timeout=TIMEOUT)
    assert backend.predicts == 2  # the stale run and the one with the prompts as now
    assert labels.data[RIGHT] == 1 and labels.data[LEFT] == 0
    assert set(np.unique(labels.data)) == {0, 1}


def test_s_c_n_commits_and_starts_the_next_object(gated, qtbot):
    layer, w, backend, _ = gated
    labels, pts = w.session.labels_layer, w.session.points_layer
    for n, where in enumerate((LEFT, RIGHT), start=1):
        backend.gate.clear()
        backend.entered.clear()
        click(pts, layer.data_to_world(where))
        _segment_running(qtbot, w, backend)
        _key(pts, "C")
        _key(pts, "N")  # the next object at once: its prompts are cleared now
        assert len(pts.data) == 0
        backend.gate.set()
        qtbot.waitUntil(lambda n=n: _idle(w) and labels.data.max() == n, timeout=TIMEOUT)
        assert labels.data[where] == n
    assert set(np.unique(labels.data)) == {0, 1, 2}
    assert w.preview.data is None and len(pts.data) == 0


def test_refine_then_commit_at_once_refines(gated, qtbot):
    layer, w, backend, _ = gated
    labels, pts = w.session.labels_layer, w.session.points_layer
    labels.data[36:44, 36:44] = 1  # a rough object 1 inside the left disc
    w.session.invalidate_max()
    labels.selected_label = 1
    w.refine_check.setChecked(True)
    results = []
    compute = w.session.compute
    w.session.compute = lambda req: results.append(compute(req)) or results[-1]
    click(pts, layer.data_to_world(LEFT))
    _segment_running(qtbot, w, backend)
    _key(pts, "C")
    backend.gate.set()
    qtbot.waitUntil(lambda: _idle(w) and bool(results), timeout=TIMEOUT)
    [res] = results
    assert res.request.refine_id == 1
    mask = res.masks()[0]
    assert mask.sum() > 64 and labels.data[LEFT] == 1
    assert set(np.unique(labels.data)) == {0, 1}  # refined in place: no new ID
    np.testing.assert_array_equal(labels.data == 1, mask)  # the old square is replaced


def test_tiled_segment_then_commit_at_once(gated, qtbot):
    layer, w, backend, _ = gated
    w.session.tile_size = 64  # the 80 x 120 plane is larger than a tile: tiled path
    labels = w.session.labels_layer
    results = []
    compute = w.session.compute
    w.session.compute = lambda req: results.append(compute(req)) or results[-1]
    click(w.session.points_layer, layer.data_to_world(LEFT))
    _segment_running(qtbot, w, backend)
    _key(w.session.points_layer, "C")
    backend.gate.set()
    qtbot.waitUntil(lambda: _idle(w) and labels.data.any(), timeout=TIMEOUT)
    [res] = results
    assert res.request.tiled and res.info["placement"] is not None
    assert res.masks()[0].shape == (64, 64)  # the tile, not the plane
    assert labels.data[LEFT] == 1 and labels.data[RIGHT] == 0
    assert set(np.unique(labels.data)) == {0, 1}


def test_cancel_while_commit_waits_commits_nothing(gated, qtbot):
    layer, w, backend, seen = gated
    labels = w.session.labels_layer
    click(w.session.points_layer, layer.data_to_world(LEFT))
    _segment_running(qtbot, w, backend)
    _key(w.session.points_layer, "C")
    assert w.committer.awaiting is not None
    w.cancel()
    assert w.committer.awaiting is None and w.status.text() == "Cancelled."
    backend.gate.set()  # the model call ends; its result is dropped
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    assert not labels.data.any() and w.session.result is None
    assert w.status.text().startswith(("Cancelled.", "Result dropped"))


def test_commit_without_segment_still_says_so(gated, qtbot):
    _, w, _, seen = gated
    w.commit()
    assert seen == ["Nothing to commit: press Segment first."]
    assert w.committer.awaiting is None


class EncodeGated(GatedBackend):
    """Gated in the encode, which a cancel stops (as SAM 2's does): the first Segment
    could be stopped by a later one."""

    def encode(self, image, cancel=None):
        self.entered.set()
        while not self.gate.wait(0.01):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Encoding cancelled.")
        return super().encode(image)

    def predict(self, embedding, objects, **kw):
        self.predicts += 1
        return ClassicalBackend.predict(self, embedding, objects, **kw)


def test_s_c_then_another_plane_commits_into_the_segmented_plane(make_napari_viewer, qtbot):
    backend = EncodeGated()
    stack = np.stack([discs()] * 3)
    layer, w = ready_widget(make_napari_viewer(), stack, Segmenter(predictor=backend))
    labels, pts = w.session.labels_layer, w.session.points_layer
    w.viewer.dims.set_point(0, 0)
    click(pts, layer.data_to_world((0, *LEFT)))
    _segment_running(qtbot, w, backend)
    _key(pts, "C")
    assert w.committer.awaiting is not None
    w.viewer.dims.set_point(0, 2)  # the user moves on before the result is there
    click(pts, layer.data_to_world((2, *RIGHT)))
    _key(pts, "S")  # another object there: queued, the awaited run is not stopped
    backend.gate.set()
    qtbot.waitUntil(lambda: _idle(w) and w.session.result is not None, timeout=TIMEOUT)
    assert labels.data[(0, *LEFT)] == 1 and set(np.unique(labels.data[0])) == {0, 1}
    assert not labels.data[1:].any()  # written into plane 0 only
    assert w.session.result.request.plane == (2,)  # plane 2's object is the preview now
    assert backend.predicts == 2


def test_commit_while_a_large_commit_is_written_is_queued(gated, qtbot, monkeypatch):
    from napari_sam2.widget import _commit
    from napari_sam2.widget._commit import QUEUED

    layer, w, backend, seen = gated
    labels, pts = w.session.labels_layer, w.session.points_layer
    planning = threading.Event()  # the first commit's plan waits for it: "in progress"
    plan = _commit.plan_commit
    monkeypatch.setattr(
        _commit, "plan_commit", lambda job, **kw: planning.wait(30) and plan(job, **kw)
    )
    w.committer.sync_px = 0  # every commit takes the planned, chunked path
    backend.gate.set()
    click(pts, layer.data_to_world(LEFT))
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)
    w.commit()
    assert w.committer.running
    pts.data = np.empty((0, 2))  # the next object while the first is written
    click(pts, layer.data_to_world(RIGHT))
    w.segment()
    qtbot.waitUntil(
        lambda: (
            not w.busy and w.session.result.request.prompts.objects[0].points.coords[0][1] > 60
        ),
        timeout=TIMEOUT,
    )
    assert w.committer.running and not labels.data.any()
    w.commit()
    assert w.status.text() == QUEUED
    w.commit()  # pressed twice: still queued once
    assert len(w.committer.queued) == 1
    planning.set()
    qtbot.waitUntil(lambda: _idle(w) and labels.data.max() == 2, timeout=TIMEOUT)
    assert labels.data[LEFT] == 1 and labels.data[RIGHT] == 2
    assert set(np.unique(labels.data)) == {0, 1, 2}
    assert [h["ids"] for h in w.committer.history] == [[1], [2]]
    assert not any(m.startswith("Nothing") for m in seen)
    labels.undo()  # each object is its own undo step
    assert labels.data[RIGHT] == 0 and labels.data[LEFT] == 1


def test_model_change_drops_a_waiting_commit_with_a_notice(gated, qtbot):
    layer, w, backend, seen = gated
    click(w.session.points_layer, layer.data_to_world(LEFT))
    _segment_running(qtbot, w, backend)
    _key(w.session.points_layer, "C")
    w.set_segmenter(Segmenter(backend="classical"))
    assert w.committer.awaiting is None
    assert "Nothing committed: the model changed while segmenting." in seen
    backend.gate.set()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    assert not w.session.labels_layer.data.any()


def test_commit_awaiting_a_queued_segment_keeps_it_when_the_user_moves_on(
    make_napari_viewer, qtbot
):
    """C waits for a *queued* Segment (the prompts changed while one ran); a Segment on
    another plane then runs after it instead of replacing it: the awaited object is
    written into its plane, the other plane's object becomes the preview."""
    backend = EncodeGated()
    stack = np.stack([discs()] * 3)
    layer, w = ready_widget(make_napari_viewer(), stack, Segmenter(predictor=backend))
    labels, pts = w.session.labels_layer, w.session.points_layer
    w.viewer.dims.set_point(0, 0)
    click(pts, layer.data_to_world((0, *LEFT)))
    _segment_running(qtbot, w, backend)
    pts.data = np.empty((0, 3))  # the user moves the click to the other disc ...
    click(pts, layer.data_to_world((0, *RIGHT)))
    _key(pts, "C")  # ... and commits at once: a second Segment is queued and awaited
    awaited = w.committer.awaiting
    assert awaited is not None and awaited.plane == (0,)
    w.viewer.dims.set_point(0, 2)  # moves on before either result is there
    click(pts, layer.data_to_world((2, *LEFT)))
    _key(pts, "S")  # held behind the awaited Segment, not replacing it
    assert w.committer.awaiting is awaited
    backend.gate.set()
    qtbot.waitUntil(
        lambda: _idle(w) and w.session.result is not None
        and w.session.result.request.plane == (2,),
        timeout=TIMEOUT,
    )
    assert labels.data[(0, *RIGHT)] == 1 and labels.data[(0, *LEFT)] == 0
    assert set(np.unique(labels.data[0])) == {0, 1} and not labels.data[1:].any()
    assert w.session.result.request.plane == (2,)  # plane 2's object is the preview
