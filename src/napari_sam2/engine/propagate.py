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
from dataclasses import dataclass, field

import numpy as np

from . import labels as _labels
from .errors import Cancelled, ImageError, LabelsError, ModelError

DIRECTIONS = ("both", "forward", "backward")
# what prompts the next plane in projection mode; "auto": mask+box for SAM 2, the mask
# alone for the classical backend (its box rule keeps the largest component of the box,
# often a neighbour in dense tissue)
PROMPTS = ("auto", "mask+box", "mask", "box", "mask+point", "mask+box+point")
MODES = ("auto", "projection", "video")
DEFAULT_IOU_THRESHOLD = 0.5
DEFAULT_MAX_AREA_RATIO = 2.5
DEFAULT_MIN_AREA = 4

# why an object stopped in one direction
END = "end"  # end of the range / of the stack
VANISHED = "vanished"  # the mask became (almost) empty
LOW_IOU = "low_overlap"  # overlap with the previous plane under the threshold
AREA_JUMP = "area_jump"  # area grew more than max_area_ratio
CANCELLED = "cancelled"
NOT_RUN = "not_run"  # direction not asked for


@dataclass
class ObjectTrack:
    """What happened to one object: planes written, area per plane, stop reasons."""

    label_id: int
    start_area: int
    areas: dict[int, int] = field(default_factory=dict)  # plane position on the axis → px
    ious: dict[int, float] = field(default_factory=dict)  # IoU with the previous plane
    stopped: dict[str, str] = field(
        default_factory=lambda: {"forward": NOT_RUN, "backward": NOT_RUN}
    )
    stopped_at: dict[str, int | None] = field(
        default_factory=lambda: {"forward": None, "backward": None}
    )

    @property
    def planes(self) -> list[int]:
        """Positions along the axis written for this object (start plane excluded)."""
        return sorted(self.areas)

    def to_dict(self) -> dict:
        return {
            "label_id": self.label_id,
            "start_area": self.start_area,
            "planes": self.planes,
            "areas": {int(k): int(v) for k, v in sorted(self.areas.items())},
            "stopped": dict(self.stopped),
            "stopped_at": dict(self.stopped_at),
        }


@dataclass
class PropagationReport:
    """Result of :func:`propagate`.

    ``objects`` maps label ID → :class:`ObjectTrack`; ``edits`` holds the planned
    :class:`~napari_sam2.engine.labels.LabelEdit` objects (applied to ``labels`` unless
    the run was cancelled or ``apply=False``).
    """

    axis: int
    start: tuple[int, ...]
    range: tuple[int, int]
    mode: str
    direction: str
    objects: dict[int, ObjectTrack] = field(default_factory=dict)
    edits: list = field(default_factory=list)
    planes_done: int = 0
    planes_total: int = 0
    plane_reads: int = 0
    cancelled: bool = False
    applied: bool = False
    seconds: float = 0.0

    @property
    def label_ids(self) -> list[int]:
        return sorted(self.objects)

    @property
    def pixels_written(self) -> int:
        return int(sum(e.size for e in self.edits))

    def planes_written(self) -> list[int]:
        """Positions along the axis where at least one object was written."""
        return sorted({p for t in self.objects.values() for p in t.areas})

    def summary(self) -> str:
        if self.cancelled:
            return "Propagation cancelled: labels unchanged."
        n = len(self.objects)
        planes = self.planes_written()
        span = f"{planes[0]}–{planes[-1]}" if planes else "none"
        return (
            f"Propagated {n} object(s) along axis {self.axis} ({self.mode}): "
            f"{len(planes)} plane(s) written ({span})."
        )

    def to_dict(self) -> dict:
        return {
            "axis": self.axis,
            "start": list(self.start),
            "range": list(self.range),
            "mode": self.mode,
            "direction": self.direction,
            "cancelled": self.cancelled,
            "applied": self.applied,
            "planes_done": self.planes_done,
            "planes_total": self.planes_total,
            "seconds": round(self.seconds, 3),
            "objects": [t.to_dict() for _, t in sorted(self.objects.items())],
        }


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
    expected = source.index_shape + source.plane_shape
    if tuple(labels.shape) != expected:
        raise LabelsError(
            f"Labels of shape {tuple(labels.shape)} do not match the image ({expected})."
        )
    if labels.dtype.kind not in "iu":
        raise LabelsError(f"Labels must be an integer array, got dtype {labels.dtype}.")
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
) -> PropagationReport:
    """See :meth:`napari_sam2.engine.Segmenter.propagate`."""
    import time

    t0 = time.perf_counter()
    source = seg._require_source()
    chosen = choose_mode(seg, mode)
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
    try:
        if chosen == "video":
            from .video import run_video

            run_video(seg, plan)
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
