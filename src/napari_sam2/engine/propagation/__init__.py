"""Propagate objects from one plane through a Z-stack or a time-lapse.

Two engines share one contract (:func:`propagate`):

- **projection** (any backend, the classical one included): plane after plane with the
  image predictor, each object prompted with its mask on the previous plane (as a mask
  prompt and its box); all objects of a plane go in one batched predict call;
- **video** (SAM 2 only, the default on CUDA): SAM 2's video predictor and its memory bank,
  fed lazily from the plane source (see :mod:`napari_sam2.engine.propagation.video`).

Nothing is written while the planes are computed: the writes are planned as
:class:`~napari_sam2.engine.labels.LabelEdit` objects and applied at the very end, so a
cancel or an exception leaves ``labels`` exactly as it was.
"""

from __future__ import annotations

import time

from .. import labels as _labels
from ..backends.base import capability
from ..errors import Cancelled, ModelError
from . import motion
from .plan import DEFAULT_IOU_THRESHOLD, DEFAULT_MAX_AREA_RATIO, DEFAULT_MIN_AREA, MODES, make_plan
from .projection import run_projection
from .report import CANCELLED, END, NOT_RUN, ObjectTrack, PropagationReport
from .tracking import run_tracking


def choose_mode(seg, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}.")
    video = bool(capability(seg.backend, "supports_video"))
    if mode == "video" and not video:
        raise ModelError(
            "Video mode needs the SAM 2 backend (its video predictor); use mode='projection' "
            "with this backend."
        )
    if mode == "auto":
        dev = getattr(getattr(seg.backend, "device", None), "type", None)
        return "video" if video and dev == "cuda" else "projection"
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
    t0 = time.perf_counter()
    source = seg.require_source()
    chosen = choose_mode(seg, mode)
    axis_kind = motion.check_axis_kind(axis_kind)
    if prompt == "auto":
        prompt = capability(seg.backend, "propagation_prompt")
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
            from .video import run_video  # lazy: imports torch and sam2

            run_video(seg, plan)
        elif axis_kind == "t":
            run_tracking(seg, plan)
        else:
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
    "DEFAULT_MAX_AREA_RATIO",
    "DEFAULT_MIN_AREA",
    "ObjectTrack",
    "PropagationReport",
    "choose_mode",
    "propagate",
]
