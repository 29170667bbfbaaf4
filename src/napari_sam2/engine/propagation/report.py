"""What a propagation did: per object, the planes written, areas and why it stopped."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def stop_reasons(self) -> str:
        """Where and why each object stopped, e.g. ``object 1: forward vanished at 21,
        backward end``."""
        parts = []
        for lid, track in sorted(self.objects.items()):
            ways = []
            for way, reason in track.stopped.items():
                at = track.stopped_at.get(way)
                ways.append(f"{way} {reason}" + ("" if at is None else f" at {at}"))
            parts.append(f"object {lid}: " + ", ".join(ways))
        return "; ".join(parts) or "no object"

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
