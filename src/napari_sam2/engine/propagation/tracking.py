"""Projection mode on a time axis: each object's previous mask is moved by its estimated
motion before it prompts the next frame (see :mod:`napari_sam2.engine.propagation.motion`).

Same contract as :func:`napari_sam2.engine.propagation.projection.run_projection` (fills the plan's
report and edits; writes nothing), plus the stop reasons of a time-lapse: ``left_field``,
``divided``, ``lost``, ``low_score``.
"""

from __future__ import annotations

import numpy as np

from ..tiling import Tile, raw_tile
from . import motion
from .projection import predict_plane
from .report import END


def _gray_window(src, index, window) -> np.ndarray:
    """The normalised gray pixels of one window of a plane (only that window is read)."""
    rs, cs = window
    raw = raw_tile(src, index, Tile(rs.start, cs.start, rs.stop, cs.stop))
    return src.to_sam_image(raw).mean(axis=-1)


def moved_mask(src, prev_index, index, mask: np.ndarray, rule: motion.TimeRule):
    """(moved mask, displacement (dr, dc)) of an object from one frame to the next."""
    pad = rule.bound(mask)
    window = motion.window_around(mask, pad)
    d = motion.estimate_displacement(
        _gray_window(src, prev_index, window),
        _gray_window(src, index, window),
        mask[window],
        pad,
    )
    return motion.shift_mask(mask, d), d


def _move_objects(seg, plan, direction, prev_pos, pos, active) -> dict:
    """Move each active object by its estimated motion; objects that leave the field stop."""
    rule = plan.rule
    moved = {}
    for lid in sorted(active):
        m, _ = moved_mask(plan.source, plan.index(prev_pos), plan.index(pos), active[lid], rule)
        inside = m.sum() / max(1, int(active[lid].sum()))
        if inside < rule.min_inside:
            plan.finish(plan.report.objects[lid], direction, motion.LEFT_FIELD, pos)
            del active[lid]
            continue
        moved[lid] = m
    return moved


def run_tracking(seg, plan) -> None:
    """Frame by frame with the image predictor (any backend), following moving objects."""
    report = plan.report
    rule = plan.rule
    for direction in plan.directions:
        positions = plan.positions(direction)
        active = dict(plan.start_masks)
        prev_pos = plan.start[plan.axis]
        for track in report.objects.values():
            track.stopped[direction] = END
        for k, pos in enumerate(positions):
            if not active:
                plan.step(len(positions) - k)
                break
            plan.check_cancel()
            moved = _move_objects(seg, plan, direction, prev_pos, pos, active)
            if not moved:
                plan.step(len(positions) - k)
                break
            ids, preds, resolved = predict_plane(seg, plan, pos, moved)
            masks = {}
            for lid, m, p in zip(ids, resolved, preds, strict=True):
                if not rule.confident(p):
                    plan.finish(report.objects[lid], direction, motion.LOW_SCORE, pos)
                    del active[lid]
                    continue
                masks[lid] = m
                active[lid] = moved[lid]  # the rule compares with the moved object
            plan.take(direction, pos, masks, active)
            prev_pos = pos
