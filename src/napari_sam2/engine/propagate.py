"""Propagate objects from one plane through a Z-stack or a time-lapse.

Two engines share one contract (:func:`propagate`):

- **projection** (any backend, the classical one included): plane after plane with the
  image predictor, each object prompted with its mask on the previous plane (as a mask
  prompt and its box); all objects of a plane go in one batched predict call;
- **video** (SAM 2 only, the default on CUDA): SAM 2's video predictor and its memory bank,
  fed lazily from the plane source (see :mod:`napari_sam2.engine.video`).

Nothing is written while the planes are computed: the writes are planned as
:class:`~napari_sam2.engine.labels.LabelEdit` objects and applied at the very end, so a
cancel or an exception leaves ``labels`` exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import labels as _labels
from .errors import Cancelled, ImageError, LabelsError, ModelError
from .propagation_report import (  # noqa: F401 - re-exported: part of this module's API
    AREA_JUMP,
    CANCELLED,
    END,
    LOW_IOU,
    NOT_RUN,
    VANISHED,
    ObjectTrack,
    PropagationReport,
)

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
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("Propagation cancelled.")

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


def choose_mode(seg, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}.")
    is_sam2 = getattr(seg.backend, "name", None) == "sam2" and hasattr(seg.backend, "loaded")
    if mode == "video" and not is_sam2:
        raise ModelError(
            "Video mode needs the SAM 2 backend (its video predictor); use mode='projection' "
            "with this backend."
        )
    if mode == "auto":
        dev = getattr(getattr(seg.backend, "device", None), "type", None)
        return "video" if is_sam2 and dev == "cuda" else "projection"
    return mode


def propagate(
    seg,
    labels,
    plane,
    *,
    axis: int = 0,
    label_ids=None,
    direction: str = "both",
    stop_at=None,
    mode: str = "auto",
    policy: str = "keep",
    cancel=None,
    progress=None,
    iou_threshold: float | None = DEFAULT_IOU_THRESHOLD,
    max_area_ratio: float | None = DEFAULT_MAX_AREA_RATIO,
    min_area: int = DEFAULT_MIN_AREA,
    prompt: str = "auto",
    apply: bool = True,
    axis_kind: str = "z",
) -> PropagationReport:
    """See :meth:`napari_sam2.engine.Segmenter.propagate`."""
    import time

    from . import motion

    t0 = time.perf_counter()
    source = seg._require_source()
    chosen = choose_mode(seg, mode)
    axis_kind = motion.check_axis_kind(axis_kind)
    if prompt == "auto":
        prompt = "mask" if getattr(seg.backend, "name", None) == "classical" else "mask+box"
    plan = make_plan(
        source,
        labels,
        plane,
        axis=axis,
        label_ids=label_ids,
        direction=direction,
        stop_at=stop_at,
        policy=policy,
        iou_threshold=iou_threshold,
        max_area_ratio=max_area_ratio,
        min_area=min_area,
        cancel=cancel,
        progress=progress,
        mode=chosen,
        prompt=prompt,
    )
    report = plan.report
    if axis_kind == "t":  # objects move: the time-lapse rule (see .motion)
        plan.rule = motion.time_rule(chosen, max_area_ratio, min_area)
    try:
        if chosen == "video":
            from .video import run_video

            run_video(seg, plan)
        elif axis_kind == "t":
            from .tracking import run_tracking

            run_tracking(seg, plan)
        else:
            from .projection import run_projection

            run_projection(seg, plan)
    except Cancelled:
        report.cancelled = True
        report.edits = []
        for track in report.objects.values():
            for d in plan.directions:
                if track.stopped[d] in (END, NOT_RUN) and track.stopped_at[d] is None:
                    track.stopped[d] = CANCELLED
    report.seconds = time.perf_counter() - t0
    if apply and not report.cancelled:
        for e in report.edits:
            _labels.apply_edit(labels, e)
        report.applied = True
    return report


__all__ = [
    "DEFAULT_IOU_THRESHOLD",
    "ObjectTrack",
    "PropagationReport",
    "iou",
    "propagate",
]
