"""The checked plan both propagation engines fill: start plane, range, directions, objects,
stop rule, and the planned (not yet applied) writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import labels as _labels
from ..cancel import check_cancel
from ..errors import ImageError, LabelsError
from .report import AREA_JUMP, LOW_IOU, VANISHED, ObjectTrack, PropagationReport

DIRECTIONS = ("both", "forward", "backward")
# what prompts the next plane in projection mode; "auto": mask+box for SAM 2, the mask
# alone for the classical backend (its box rule keeps the largest component of the box,
# often a neighbour in dense tissue)
PROMPTS = ("auto", "mask+box", "mask", "box", "mask+point", "mask+box+point")
MODES = ("auto", "projection", "video")
DEFAULT_IOU_THRESHOLD = 0.5
DEFAULT_MAX_AREA_RATIO = 2.5
DEFAULT_MIN_AREA = 4


# --------------------------------------------------------------------- helpers
def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class StopRule:
    """When an object's next mask is not written: vanished, low IoU, area jump."""

    def __init__(self, iou_threshold, max_area_ratio, min_area):
        self.iou_threshold = None if iou_threshold is None else float(iou_threshold)
        self.max_area_ratio = None if max_area_ratio is None else float(max_area_ratio)
        self.min_area = int(min_area)

    def check(self, prev: np.ndarray, new: np.ndarray) -> tuple[str | None, float]:
        area = int(new.sum())
        if area < self.min_area:
            return VANISHED, 0.0
        ov = iou(prev, new)
        if self.iou_threshold is not None and ov < self.iou_threshold:
            return LOW_IOU, ov
        prev_area = max(int(prev.sum()), 1)
        if self.max_area_ratio is not None and area > self.max_area_ratio * prev_area:
            return AREA_JUMP, ov
        return None, ov


@dataclass
class Plan:
    """Everything both engines need, checked once."""

    source: object
    labels: object
    start: tuple[int, ...]
    axis: int
    first: int
    last: int
    directions: tuple[str, ...]
    ids: list[int]
    start_masks: dict[int, np.ndarray]
    policy: str
    prompt: str
    rule: StopRule
    cancel: object
    progress: Callable | None
    report: PropagationReport

    def index(self, pos: int) -> tuple[int, ...]:
        idx = list(self.start)
        idx[self.axis] = int(pos)
        return tuple(idx)

    def positions(self, direction: str) -> list[int]:
        s = self.start[self.axis]
        if direction == "forward":
            return list(range(s + 1, self.last + 1))
        return list(range(s - 1, self.first - 1, -1))

    def check_cancel(self) -> None:
        check_cancel(self.cancel, "Propagation cancelled.")

    def step(self, n: int = 1) -> None:
        r = self.report
        r.planes_done = min(r.planes_total, r.planes_done + n)
        if self.progress is not None:
            self.progress(r.planes_done, r.planes_total)

    def write_plane(self, pos: int, masks: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Plan the edits of one plane; returns each object's pixels now carrying its ID."""
        index = self.index(pos)
        plane = np.asarray(self.labels[index])
        written = {}
        for lid, m in masks.items():
            edit = _labels.plan_object_write(
                self.labels, m, index=index, label_id=lid, policy=self.policy
            )
            if edit.size:
                self.report.edits.append(edit)
            mine = (
                m.copy()
                if self.policy == _labels.OVERWRITE
                else m & ((plane == 0) | (plane == lid))
            )
            written[lid] = mine
        return written

    def finish(self, track: ObjectTrack, direction: str, reason: str, pos: int | None) -> None:
        track.stopped[direction] = reason
        track.stopped_at[direction] = pos

    def take(self, direction: str, pos: int, masks: dict, active: dict) -> None:
        """Check each object's new mask on plane ``pos``, plan its writes, update ``active``
        (objects that stop leave it), and count the plane."""
        accept = {}
        for lid, m in masks.items():
            reason, ov = self.rule.check(active[lid], m)
            track = self.report.objects[lid]
            if reason is not None:
                self.finish(track, direction, reason, pos)
                del active[lid]
                continue
            accept[lid] = m
            track.ious[pos] = ov
        for lid, m in self.write_plane(pos, accept).items():
            area = int(m.sum())
            self.report.objects[lid].areas[pos] = area
            if area < self.rule.min_area:  # other objects' pixels took it all
                self.finish(self.report.objects[lid], direction, VANISHED, pos)
                del active[lid]
            else:
                active[lid] = m
        self.step()


def make_plan(
    source,
    labels,
    plane,
    *,
    axis: int,
    label_ids,
    direction: str,
    stop_at,
    policy: str,
    iou_threshold,
    max_area_ratio,
    min_area,
    cancel,
    progress,
    mode: str,
    prompt: str = "auto",
) -> Plan:
    start = source.check_index(plane)
    n_axes = len(source.index_shape)
    if n_axes == 0:
        raise ImageError("Propagation needs a stack: the image has no Z/T axis.")
    if not isinstance(axis, (int, np.integer)) or not 0 <= int(axis) < n_axes:
        raise ImageError(
            f"axis {axis!r} is not one of the image's {n_axes} plane axes "
            f"(0..{n_axes - 1}, shape {source.index_shape})."
        )
    axis = int(axis)
    _labels.check_stack_labels(labels, source)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}.")
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, not {prompt!r}.")
    if policy not in _labels.POLICIES:
        raise LabelsError(f"policy must be one of {_labels.POLICIES}, not {policy!r}.")
    n = source.index_shape[axis]
    first, last = (0, n - 1) if stop_at is None else (int(stop_at[0]), int(stop_at[1]))
    first, last = min(first, last), max(first, last)
    s = start[axis]
    if not (0 <= first <= s <= last < n):
        raise ImageError(
            f"stop_at={stop_at!r} must lie inside 0..{n - 1} and contain the start plane {s}."
        )
    plane_labels = np.asarray(labels[start])
    present = [int(v) for v in np.unique(plane_labels) if v != 0]
    if label_ids is None:
        ids = present
    else:
        ids = sorted({int(v) for v in np.atleast_1d(label_ids)})
        missing = [v for v in ids if v not in present]
        if missing:
            raise LabelsError(
                f"Label(s) {missing} are not on the start plane {start}: draw or segment the "
                "object there first."
            )
    if not ids:
        raise LabelsError(
            f"No object on the start plane {start}: segment and commit an object first."
        )
    dirs = ("forward", "backward") if direction == "both" else (direction,)
    report = PropagationReport(axis, start, (first, last), mode, direction)
    report.planes_total = sum((last - s) if d == "forward" else (s - first) for d in dirs)
    masks = {lid: plane_labels == lid for lid in ids}
    for lid in ids:
        report.objects[lid] = ObjectTrack(lid, int(masks[lid].sum()))
    return Plan(
        source,
        labels,
        start,
        axis,
        first,
        last,
        dirs,
        ids,
        masks,
        policy,
        prompt,
        StopRule(iou_threshold, max_area_ratio, min_area),
        cancel,
        progress,
        report,
    )
