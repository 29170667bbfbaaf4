"""One file, start to end: read, prompt / segment everything / propagate, write atomically.

Everything here is picklable and runs the same in-process and on a dask worker.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import _files as F
from ._results import DONE, FAILED, SKIPPED, FileResult

BATCH_CACHE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class ModelOptions:
    """How to build the :class:`~napari_sam2.engine.Segmenter` (once per process/worker)."""

    model: str = "tiny"
    checkpoint: str | None = None
    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    image_size: int | None = None

    def make(self):
        from ..engine.segmenter import Segmenter

        return Segmenter(
            self.model,
            self.checkpoint,
            backend=self.backend,
            device=self.device,
            precision=self.precision,
            image_size=self.image_size,
            cache_bytes=BATCH_CACHE_BYTES,
        )

    def key(self) -> str:
        return _digest(asdict(self))


@dataclass(frozen=True)
class Settings:
    """What to do with every file (besides its prompts)."""

    auto: bool = False
    propagate: bool = False
    planes: tuple | None = None  # planes for --auto (None: every plane)
    contrast_limits: tuple | None = None
    channel: int | str = "mean"
    series: int = 0
    overwrite: bool = False


@dataclass
class Job:
    """One input file and everything needed to segment it (the unit of work)."""

    input: str
    output: str
    prompts: dict | None = None
    settings: Settings = field(default_factory=Settings)
    fingerprint: str = ""


def _digest(obj) -> str:
    text = json.dumps(
        obj,
        sort_keys=True,
        default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(prompts, settings: Settings, model: ModelOptions) -> str:
    """Identifies how an output was made (prompts, settings, model options)."""
    s = asdict(settings)
    s.pop("overwrite")
    p = {repr(k): asdict(v) for k, v in sorted((prompts or {}).items())}
    return _digest({"prompts": p, "settings": s, "model": asdict(model)})


def check_existing(job: Job) -> FileResult | None:
    """A ``skipped`` result when a complete output exists and overwriting is off."""
    out = Path(job.output)
    if job.settings.overwrite or not out.exists():
        return None
    rec = F.read_output_record(out)
    if rec is None:
        return None  # incomplete or foreign: redo it
    res = FileResult(job.input, job.output, SKIPPED, "complete output exists")
    made = (rec.get("batch") or {}).get("fingerprint")
    if made and job.fingerprint and made != job.fingerprint:
        res.reason = (
            "complete output exists (made with other prompts/settings; --overwrite redoes it)"
        )
    return res


EXPECTED = (ValueError, OSError, LookupError)


def run_job(job: Job, segmenter, *, on_plane=None, reraise_unexpected: bool = False) -> FileResult:
    """Segment one file with ``segmenter``; never raises for a bad file (``failed``).

    ``on_plane()`` is called after each plane.  With ``reraise_unexpected`` an error that
    is not about the input (a lost GPU, out of memory...) is raised (cluster retries it).
    """
    from ..engine.errors import NapariSam2Error

    t0 = time.perf_counter()
    try:
        skipped = check_existing(job)
        if skipped is not None:
            return skipped
        result = _segment(job, segmenter, on_plane)
    except (NapariSam2Error, *EXPECTED) as e:
        result = FileResult(job.input, job.output, FAILED, _one_line(e))
    except Exception as e:  # noqa: BLE001 - one bad file never stops the others
        if reraise_unexpected:
            raise
        result = FileResult(job.input, job.output, FAILED, f"{type(e).__name__}: {_one_line(e)}")
    result.seconds = time.perf_counter() - t0
    return result


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _segment(job: Job, seg, on_plane) -> FileResult:
    st = job.settings
    prompts = job.prompts or {}
    if not prompts and not st.auto:
        raise F.InputError("no prompts for this file (give --prompts, --points/--boxes or --auto)")
    out = Path(job.output)
    F.remove_stale_partials(out)
    img = F.read_image(Path(job.input), st.series)
    axes, data = img.axes, img.data
    rgb = axes.endswith("S") and data.shape[-1] in (3, 4)
    c_axis = axes.index("C") if "C" in axes else None
    keep = [i for i, a in enumerate(axes) if a not in "CS"] if axes else list(range(data.ndim))
    seg.set_image(data, contrast_limits=st.contrast_limits, rgb=rgb, channel_axis=c_axis,
                  channel=st.channel)  # fmt: skip
    src = seg.source
    labels = np.zeros(src.index_shape + src.plane_shape, dtype=np.int32)
    objects: dict = {}
    notes: list[str] = []
    planes = 0
    prompted = []
    for plane, pp in sorted(prompts.items()):
        if src.index_shape and not plane:
            raise F.InputError(
                f"the image has non-spatial axes of shape {src.index_shape}: prompts need a plane"
            )
        plane = tuple(src.check_index(plane))
        notes += pp.notes
        for lid, obj in pp.objects(src.plane_shape):
            for i in seg.segment_into(labels, plane, objects=[obj], label_id=lid):
                objects[int(i)] = {**obj.to_dict(), "plane": list(plane)}
        prompted.append(plane)
        planes += 1
        if on_plane:
            on_plane()
    if st.auto:
        if not hasattr(seg, "segment_everything"):
            raise F.InputError(
                "automatic mode (--auto) needs a napari-sam2 version with "
                "Segmenter.segment_everything"
            )
        auto_planes = [tuple(p) for p in st.planes] if st.planes else list(src.iter_indices())
        for plane in auto_planes:
            plane = tuple(src.check_index(plane))
            before = int(labels.max())
            seg.segment_everything(labels, plane)
            for i in range(before + 1, int(labels.max()) + 1):
                objects[i] = {"automatic": True, "plane": list(plane)}
            if plane not in prompted:
                prompted.append(plane)
            planes += 1
            if on_plane:
                on_plane()
    if st.propagate:
        if not hasattr(seg, "propagate"):
            raise F.InputError(
                "3-D propagation (--propagate) needs a napari-sam2 version with Segmenter.propagate"
            )
        if not src.index_shape:
            raise F.InputError("--propagate needs a stack (Z or T axis); this image is 2-D")
        for plane in prompted:
            seg.propagate(labels, plane, axis=0)
            notes.append(f"propagated from plane {list(plane)} along axis 0")
        planes = int(np.count_nonzero(labels.reshape(*src.index_shape, -1).any(axis=-1)))
    prov = {
        "source_image": str(Path(job.input).resolve()),
        "plane": list(prompted[0]) if len(prompted) == 1 else [list(p) for p in prompted],
        "command": F.COMMAND,
        **seg.describe(),
        "objects": objects,
        "batch": {"fingerprint": job.fingerprint, "auto": st.auto, "propagate": st.propagate},
        "input": img.extra,
    }
    lab_axes = "".join(axes[i] for i in keep) if axes else None
    F.atomic_save(
        out,
        labels,
        prov,
        axes=lab_axes,
        scale=[img.scale[i] for i in keep] if img.scale else None,
        units=[img.units[i] for i in keep] if img.units else None,
    )
    return FileResult(job.input, job.output, DONE, objects=sorted(objects), planes=planes,
                      notes=notes)  # fmt: skip
