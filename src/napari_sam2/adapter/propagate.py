"""Propagation from napari layers: which axis, which plane, and one undo step at the end.

No Qt here.  The widget calls :func:`prepare_propagation` on the main thread (reads the
layers and the viewed plane), :func:`run_propagation` in a worker thread (the engine only
*plans* the writes), then :func:`apply_propagation` back on the main thread, which writes
everything into the Labels layer as **one** undo step.  A cancelled or failed run writes
nothing.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

import numpy as np

from ..engine.errors import ImageError, LabelsError, PromptError
from ..engine.labels import KEEP, OVERWRITE, LabelEdit
from ..engine.propagation.report import PropagationReport
from .channels import image_source
from .layers import channel_axis_of, labels_matching, spatial_shape, write_edits
from .orientation import Orientation, oriented_source

Z_NAMES = ("z", "depth", "slice", "slices", "plane", "planes", "zplane")
T_NAMES = ("t", "time", "frame", "frames", "timepoint", "timepoints")
RANGES = ("whole axis", "current to end", "start to current")
OBJECTS = ("all on this plane", "selected label")


def plane_axes(image_layer, orientation: Orientation | None = None) -> list[tuple[int, str]]:
    """(axis, label) of the axes a labels plane index runs over (channel axis dropped):
    the axes the viewer does not display (``orientation``; default: all but the last two),
    numbered in the order of the plane index."""
    nd = len(spatial_shape(image_layer))
    ch = channel_axis_of(image_layer)
    if orientation is None:
        orientation = Orientation.standard(image_layer.ndim, ch)
    names = [str(a) for a in getattr(image_layer, "axis_labels", ())]
    names = [a for i, a in enumerate(names) if i != ch] if ch is not None else names
    names = [names[a] if a < len(names) else f"axis {a}" for a in range(nd)]
    return [(i, names[a]) for i, a in enumerate(orientation.leading)]


def axis_kind(label: str) -> str | None:
    """``"z"``, ``"t"`` or None from an axis label."""
    a = str(label).strip().lower()
    if a in Z_NAMES:
        return "z"
    if a in T_NAMES:
        return "t"
    return None


def propose_axis(image_layer, orientation: Orientation | None = None) -> int | None:
    """The axis to propagate along: the only one not displayed, the one labelled Z
    (stacks) or T (time-lapses), on a view across the stack the only non-T one; None when
    ambiguous (both, or several unlabelled axes): ask the user."""
    axes = plane_axes(image_layer, orientation)
    if not axes:
        return None
    if len(axes) == 1:
        return 0
    kinds = [axis_kind(lab) for _, lab in axes]
    if orientation is not None and not orientation.identity and "t" in kinds:
        across = [i for i, k in enumerate(kinds) if k != "t"]
        if len(across) == 1:  # a view across the stack: through it, not through time
            return across[0]
    found = [i for i, k in enumerate(kinds) if k is not None]
    return found[0] if len(found) == 1 else None


@dataclass
class PropagationJob:
    """Everything a worker needs; ``cancel`` stops it between planes and inside encodes."""

    segmenter: object
    image_layer: object
    labels_layer: object
    source: object
    plane: tuple[int, ...]
    axis: int
    kwargs: dict
    orientation: Orientation | None = None  # the displayed axes (None: the last two)
    cancel: threading.Event = field(default_factory=threading.Event)
    report: PropagationReport | None = None


def stop_range(n: int, current: int, choice: str) -> tuple[int, int]:
    """``stop_at`` for a range choice of :data:`RANGES`."""
    if choice == "current to end":
        return (current, n - 1)
    if choice == "start to current":
        return (0, current)
    if choice == "whole axis":
        return (0, n - 1)
    raise ValueError(f"range must be one of {RANGES}, not {choice!r}.")


def prepare_propagation(
    session,
    *,
    axis: int | None = None,
    direction: str = "both",
    range_choice: str = "whole axis",
    objects: str = "all on this plane",
    mode: str = "auto",
) -> PropagationJob:
    """Read layers and the viewed plane (main thread).  Raises typed errors."""
    if session.segmenter is None:
        raise ImageError("The model is still loading: wait for the status line to say ready.")
    img = session.checked_image()
    orient = session.orientation()
    axes = plane_axes(img, orient)
    if not axes:
        raise ImageError(f"Image '{img.name}' is 2-D: there is no Z or T axis to propagate along.")
    if axis is None:
        axis = propose_axis(img, orient)
        if axis is None:
            raise ImageError("Choose the axis to propagate along (Z or T).")
    if not 0 <= int(axis) < len(axes):
        raise ImageError(f"Axis {axis} is not a Z/T axis of '{img.name}'.")
    axis = int(axis)
    msg = labels_matching(session.labels_layer, img)
    if msg:
        raise LabelsError(msg)
    index = session.viewed_index()
    plane = session.labels_plane(img, index)
    labels = orient.view(session.labels_layer.data)  # the non-displayed axes first
    on_plane = np.asarray(labels[plane])
    if objects == "selected label":
        lid = int(session.labels_layer.selected_label)
        if lid <= 0 or not (on_plane == lid).any():
            raise PromptError(
                f"Label {lid} has no pixel on this plane: select a label drawn here, or "
                "propagate all objects of the plane."
            )
        label_ids = [lid]
    elif objects == "all on this plane":
        if not on_plane.any():
            raise PromptError("No object on this plane: segment and commit one first.")
        label_ids = None
    else:
        raise ValueError(f"objects must be one of {OBJECTS}, not {objects!r}.")
    n = int(orient.shape(spatial_shape(img))[axis])
    stop_at = stop_range(n, int(plane[axis]), range_choice)
    source = oriented_source(image_source(session.viewer, img, session.channel, index), orient)
    kwargs = {
        "axis": axis,
        "axis_kind": axis_kind(axes[axis][1]) or "z",  # T: objects move between frames
        "label_ids": label_ids,
        "direction": direction,
        "stop_at": stop_at,
        "mode": mode,
        "policy": OVERWRITE if session.overwrite else KEEP,
    }
    return PropagationJob(
        session.segmenter, img, session.labels_layer, source, plane, axis, kwargs, orient
    )


VIDEO_FRAME_COST = 1.5  # a video frame ~ one encode + memory attention (measured on CPU)


def time_estimate(job: PropagationJob) -> str | None:
    """What video mode will cost off CUDA, said before the run starts (None otherwise)."""
    from ..engine.propagation import choose_mode

    seg = job.segmenter
    if choose_mode(seg, job.kwargs.get("mode", "auto")) != "video":
        return None
    device = str(getattr(getattr(seg.backend, "device", None), "type", "cpu"))
    if device == "cuda":
        return None
    first, last = job.kwargs["stop_at"]
    n = max(0, int(last) - int(first))
    per = float(seg.stats.last_encode_s or 0.0) * VIDEO_FRAME_COST
    if per <= 0:
        return (
            f"Video mode on {device}: {n} frame(s), each an encode plus memory attention "
            "(seconds per frame here)."
        )
    total = n * per
    span = f"{total / 60:.0f} min" if total >= 120 else f"{total:.0f} s"
    return f"Video mode on {device}: about {span} for {n} frame(s) (~{per:.1f} s each)."


def run_propagation(job: PropagationJob, progress=None) -> PropagationReport:
    """Plan the writes (worker thread); nothing is written to the layer here."""
    seg = job.segmenter
    src = job.source
    seg.set_image(src.data, **src.kwargs)  # cheap; the embedding cache is keyed by content
    job.report = seg.propagate(
        _oriented(job).view(job.labels_layer.data),
        job.plane,
        cancel=job.cancel,
        progress=progress,
        apply=False,
        **job.kwargs,
    )
    return job.report


def _oriented(job: PropagationJob) -> Orientation:
    if job.orientation is None:
        return Orientation.standard(job.image_layer.ndim, channel_axis_of(job.image_layer))
    return job.orientation


def merged_edit(edits) -> LabelEdit | None:
    """All edits of a run as one (their pixels are disjoint): one ``data_setitem`` call."""
    edits = [e for e in edits if e.size]
    if not edits:
        return None
    nd = len(edits[0].indices)
    idx = tuple(np.concatenate([e.indices[k] for e in edits]) for k in range(nd))
    return LabelEdit(idx, np.concatenate([e.values for e in edits]), edits[0].label_id)


def apply_propagation(job: PropagationJob, report: PropagationReport | None = None) -> int:
    """Write a finished run into its Labels layer as one undo step; returns pixels written.

    Nothing is written for a cancelled run.
    """
    report = report or job.report
    if report is None or report.cancelled:
        return 0
    edit = merged_edit(report.edits)
    if edit is None:
        return 0
    edit = dataclasses.replace(edit, indices=_oriented(job).data_index(edit.indices))
    write_edits(job.labels_layer, [edit])
    report.applied = True
    meta = job.labels_layer.metadata.setdefault("napari_sam2", {})
    meta.setdefault("propagations", []).append(
        {k: v for k, v in report.to_dict().items() if k != "objects"}
    )
    return edit.size


# ------------------------------------------------------------------- time-lapse
def object_rows(labels_layer, time_axis: int) -> list[dict]:
    """Per-object table (frame, ID, area in physical units, centroids) of a Labels layer."""
    from ..io.exports.tracks import object_table

    data = np.asarray(labels_layer.data)
    return object_table(
        data,
        time_axis=time_axis,
        scale=np.asarray(labels_layer.scale, float),
        translate=np.asarray(labels_layer.translate, float),
    )


def add_tracks_layer(viewer, labels_layer, time_axis: int = 0, rows=None):
    """A napari Tracks layer of the labels (track ID = label ID, one centroid per frame).

    The Tracks layer gets the Labels layer's scale and translate, so it lies on the
    objects in world coordinates.  Its ``metadata["table"]`` holds the per-object rows.
    """
    from ..io.exports.tracks import tracks_array

    if time_axis != 0:
        raise ImageError("Tracks need time as the first axis (napari's Tracks layout).")
    rows = object_rows(labels_layer, time_axis) if rows is None else rows
    data = tracks_array(rows)
    if not len(data):
        raise LabelsError(f"Labels layer '{labels_layer.name}' is empty: no track to add.")
    return viewer.add_tracks(
        data,
        name=f"{labels_layer.name} tracks",
        scale=np.asarray(labels_layer.scale, float),
        translate=np.asarray(labels_layer.translate, float),
        metadata={"table": rows},
        tail_length=10,
    )
