"""Propagation through time (axis_kind="t"): objects that move, divide and leave the field."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends.base import Prediction
from napari_sam2.engine.propagation import motion
from napari_sam2.engine.propagation.report import LOW_IOU
from timelapse_helpers import moving_cells


@pytest.fixture(scope="module")
def movie():
    return moving_cells()


def _run(movie, kind, **kw):
    frames, truth, _ = movie
    seg = Segmenter(backend="classical")
    seg.set_image(frames)
    labels = np.zeros(truth.shape, np.int32)
    labels[0] = truth[0]
    report = seg.propagate(labels, (0,), axis=0, direction="forward", axis_kind=kind, **kw)
    return labels, report


def _lineage(truth_id: int, facts) -> set[int]:
    return {5, 6, 7} if truth_id == facts["dividing"] else {truth_id}


def test_time_axis_follows_moving_cells(movie):
    frames, truth, facts = movie
    labels, report = _run(movie, "t")
    on_right = total = 0
    for lid in range(1, 6):
        right = _lineage(lid, facts)
        for t in range(1, truth.shape[0]):
            if lid == facts["exiting"] and t >= facts["exit_frame"]:
                continue  # gone: checked below
            total += 1
            mine = labels[t] == lid
            if not mine.any():
                continue
            ids, counts = np.unique(truth[t][mine], return_counts=True)
            # no ID jumps to a neighbour: what it covers is its own cell (or a daughter)
            assert set(ids[ids > 0].tolist()) <= right, (lid, t, ids)
            best = int(ids[np.argmax(counts)])
            cell = truth[t] == best
            iou = (mine & cell).sum() / (mine | cell).sum()
            on_right += best in right and iou >= 0.8
    assert on_right / total >= 0.9, (on_right, total)


def test_exit_is_reported_with_its_reason(movie):
    _, truth, facts = movie
    labels, report = _run(movie, "t")
    track = report.objects[facts["exiting"]]
    assert track.stopped["forward"] == motion.LEFT_FIELD
    assert abs(track.stopped_at["forward"] - facts["exit_frame"]) <= 1
    assert "left_field" in report.stop_reasons()
    # nothing of it is written after it left
    after = labels[track.stopped_at["forward"] :]
    assert not (after == facts["exiting"]).any()


def test_other_cells_run_to_the_end(movie):
    _, truth, facts = movie
    _, report = _run(movie, "t")
    for lid in (1, 2, 3):
        assert report.objects[lid].stopped["forward"] == "end"
        assert report.objects[lid].planes == list(range(1, truth.shape[0]))


def test_z_rule_stops_moving_cells_at_frame_1(movie):
    """Why the time rule exists: the Z rule (IoU >= 0.5 with the previous plane)."""
    _, report = _run(movie, "z")
    for lid in (1, 2, 3, 5):
        assert report.objects[lid].stopped["forward"] == LOW_IOU
        assert report.objects[lid].stopped_at["forward"] == 1


def test_axis_kind_is_checked(movie):
    with pytest.raises(ValueError, match="axis_kind"):
        _run(movie, "time")


# ------------------------------------------------------------------- the parts
def test_displacement_estimate_finds_the_shift():
    rng = np.random.default_rng(1)
    from scipy import ndimage as ndi

    img = ndi.gaussian_filter(rng.normal(size=(120, 120)), 2)
    moved = np.roll(img, (9, -14), axis=(0, 1))
    mask = np.zeros(img.shape, bool)
    mask[50:70, 50:70] = True
    window = motion.window_around(mask, 20)
    d = motion.estimate_displacement(img[window], moved[window], mask[window], 20)
    assert tuple(d) == (9.0, -14.0)


def test_shift_mask_drops_what_leaves_the_plane():
    m = np.zeros((10, 10), bool)
    m[2:5, 6:9] = True
    out = motion.shift_mask(m, (1, 3))
    assert out.sum() == 3 * 1  # only column 9 stays inside
    assert out[3:6, 9].all()


def test_rule_names_division_and_jump():
    rule = motion.TimeRule()
    prev = np.zeros((60, 60), bool)
    prev[20:40, 20:40] = True
    two = np.zeros_like(prev)
    two[14:26, 22:38] = True
    two[34:46, 22:38] = True
    assert rule.check(prev, two)[0] == motion.DIVIDED
    neighbour = np.roll(prev, 20, axis=1)  # a cell one diameter to the right
    assert rule.check(prev, neighbour)[0] == motion.LOST
    near = np.roll(prev, 4, axis=1)
    assert rule.check(prev, near)[0] is None


def test_rule_reads_the_model_scores():
    rule = motion.TimeRule()
    m = np.ones((1, 4, 4), bool)
    assert rule.confident(Prediction(m, np.array([0.9])))
    assert not rule.confident(Prediction(m, np.array([0.3])))
    assert not rule.confident(Prediction(m, np.array([0.9]), info={"object_score": -2.0}))
