"""Commit [C] of large objects: planned in a worker, written in bands across event-loop
turns, one undo step, all or nothing, re-planned when the labels change meanwhile."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.adapter import commit as acommit
from napari_sam2.widget import _commit
from widget_helpers import TIMEOUT, click, ready_widget
from widget_helpers import discs as _discs
from widget_helpers import segment_and_wait as _segment

IMG = _discs(shape=(120, 160), centers=((60, 50), (60, 115)), r=30)


def _ready(viewer, qtbot, *, chunk_px=400, step_px=800):
    layer, w = ready_widget(viewer, IMG)
    c = w.committer
    c.sync_px, c.chunk_px, c.step_px = 0, chunk_px, step_px  # every commit goes async
    click(w.session.points_layer, layer.data_to_world((60, 50)))
    _segment(qtbot, w)
    return layer, w


def _commit_and_wait(qtbot, w):
    w.commit()
    assert w.committer.running  # not written on the spot
    qtbot.waitUntil(lambda: not w.committer.running, timeout=TIMEOUT)


def _disc(r=30):
    yy, xx = np.mgrid[:120, :160]
    return (yy - 60) ** 2 + (xx - 50) ** 2 <= r**2


def test_large_commit_is_chunked_and_one_undo_step(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, w = _ready(viewer, qtbot)
    labels = w.session.labels_layer
    labels.data[0:4, 0:4] = 5  # an earlier object elsewhere
    before = labels.data.copy()
    _commit_and_wait(qtbot, w)
    after = labels.data.copy()
    disc = _disc()
    assert (after[disc] == 6).mean() > 0.95  # the disc, as the next ID (max + 1)
    assert (after[0:4, 0:4] == 5).all() and (after[~disc & (before == 0)] == 0).mean() > 0.99
    [rec] = w.committer.history
    assert rec["ids"] == [6] and rec["pixels"] == int((after != before).sum())
    assert rec["chunks"] >= 6 and rec["steps"] >= 3  # bands, over several turns
    assert w.session.result is None and w.preview.layer.visible is False
    assert "Wrote label(s) 6" in w.status.text()
    labels.undo()  # one step takes the whole object back
    np.testing.assert_array_equal(labels.data, before)
    labels.redo()
    np.testing.assert_array_equal(labels.data, after)
    meta = labels.metadata["napari_sam2"]
    assert list(meta["objects"]) == [6] and meta["commits"][-1]["ids"] == [6]


def test_same_labels_as_the_direct_write(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, w = _ready(viewer, qtbot)
    res = w.session.result
    _commit_and_wait(qtbot, w)
    chunked = w.session.labels_layer.data.copy()
    w.session.labels_layer.undo()
    w.session.invalidate_max()  # as the widget's Ctrl-Z does (layer.undo() emits nothing)
    w.session.result = res
    w.committer.sync_px = 10**9  # the old synchronous path
    w.commit()
    assert not w.committer.running
    np.testing.assert_array_equal(w.session.labels_layer.data, chunked)


def test_labels_changed_while_planning_replans(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    _, w = _ready(viewer, qtbot)
    labels = w.session.labels_layer
    c, calls = w.committer, []

    def user_paints_while_planning(job):  # the user painted while the plan was computed
        if not calls:
            labels.data_setitem((np.array([60]), np.array([50])), 9)
        calls.append(job)

    c.planned.connect(user_paints_while_planning)
    _commit_and_wait(qtbot, w)
    assert len(calls) == 2  # the first plan was refused, the second written
    assert labels.data[60, 50] == 9  # the user's pixel is kept (keep policy)
    assert labels.data[60, 40] == 10  # a fresh ID: 9 is taken now
    assert c.history[-1]["ids"] == [10]


def test_labels_changed_every_time_refuses_and_writes_nothing(
    make_napari_viewer, qtbot, monkeypatch
):
    viewer = make_napari_viewer()
    _, w = _ready(viewer, qtbot)
    labels = w.session.labels_layer
    c, notes = w.committer, []
    monkeypatch.setattr("napari_sam2.widget._notify.show_warning", notes.append)
    writer_steps = []

    def paint_between_steps(writer):
        if writer.steps != 1:
            return
        writer_steps.append(writer)
        # after the first band is written, the user paints elsewhere (next turn)
        labels.data_setitem((np.array([5]), np.array([150])), 2 + len(writer_steps))

    c.stepped.connect(paint_between_steps)
    _commit_and_wait(qtbot, w)
    assert len(writer_steps) == _commit.MAX_ATTEMPTS
    assert all(s.steps >= 1 for s in writer_steps)  # bands had been written, then undone
    assert notes and "nothing was written" in notes[-1]
    expected = np.zeros_like(labels.data)
    expected[5, 150] = 2 + _commit.MAX_ATTEMPTS
    np.testing.assert_array_equal(labels.data, expected)  # no half-written object
    assert w.session.result is not None  # the preview stays: commit again


def test_error_mid_write_leaves_labels_unchanged(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    _, w = _ready(viewer, qtbot)
    labels = w.session.labels_layer
    labels.data[0:4, 0:4] = 5
    labels.data_setitem((np.array([10]), np.array([10])), 4)  # an undo step before
    before = labels.data.copy()
    write, n = acommit.write_chunk, []
    notes = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_warning", notes.append)

    def failing(data, chunk):
        n.append(1)
        if len(n) == 4:
            raise OSError("disk full")
        write(data, chunk)

    monkeypatch.setattr(acommit, "write_chunk", failing)
    _commit_and_wait(qtbot, w)
    assert len(n) == 4 and "disk full" in notes[-1]
    np.testing.assert_array_equal(labels.data, before)
    labels.undo()  # the undo history holds no step of the failed commit
    assert labels.data[10, 10] == 0 and (labels.data[0:4, 0:4] == 5).all()


def test_small_commit_still_written_at_once(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, IMG)
    click(w.session.points_layer, layer.data_to_world((60, 50)))
    _segment(qtbot, w)
    w.commit()  # default threshold: a 2800-pixel disc is written on the spot
    assert not w.committer.running and w.session.labels_layer.data[60, 50] == 1


@pytest.mark.parametrize("chunk_px", [1, 37, 10**6])
def test_plane_chunks_cover_exactly_the_change(chunk_px):
    rng = np.random.default_rng(0)
    before = rng.integers(0, 3, (40, 50)).astype(np.uint16)
    after = before.copy()
    after[5:30, 7:44][rng.random((25, 37)) > 0.5] = 7
    chunks = acommit.plane_chunks(before, after, (2,), chunk_px)
    out = np.zeros((3, 40, 50), np.uint16)
    out[2] = before
    for ch in chunks:
        assert ch.mask.size <= max(chunk_px, 37) and ch.key[0] == 2
        region = out[ch.key]
        np.testing.assert_array_equal(region[ch.mask], ch.old)
        region[ch.mask] = ch.new
        idx, old, new = ch.atom()
        np.testing.assert_array_equal(out[idx], new)
    np.testing.assert_array_equal(out[2], after)


@pytest.mark.parametrize("sync_px", [10**9, 0])
def test_refine_commit_never_hands_out_an_existing_id(make_napari_viewer, qtbot, sync_px):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, IMG)
    w.committer.sync_px = sync_px
    labels = w.session.labels_layer
    labels.data[0:3, 0:3] = 2  # the highest ID so far
    labels.data[50:70, 40:60] = 1  # object 1 inside the left disc: refined below
    w.session.invalidate_max()
    labels.selected_label = 1
    w.refine_check.setChecked(True)
    click(w.session.points_layer, layer.data_to_world((60, 50)))
    _segment(qtbot, w)
    w.commit()
    qtbot.waitUntil(lambda: not w.committer.running, timeout=TIMEOUT)
    assert labels.data[60, 35] == 1  # refined: the whole disc is object 1 now
    w.next_object()
    click(w.session.points_layer, layer.data_to_world((60, 115)))
    _segment(qtbot, w)
    w.commit()
    qtbot.waitUntil(lambda: not w.committer.running, timeout=TIMEOUT)
    assert labels.data[60, 115] == 3 and (labels.data[0:3, 0:3] == 2).all()
