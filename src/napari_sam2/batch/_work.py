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
from . import _outputs as O
from ._planes import resolve_planes
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
    planes: tuple | None = None  # --plane spec or plane tuples for --auto (None: every plane)
    contrast_limits: tuple | None = None
    channel: int | str = "mean"
    series: int = 0
    overwrite: bool = False
    dicom_seg: bool = False
    segments: dict | None = None  # DICOM SEG names/codes {"ID": {"label", "category", "type"}}


@dataclass
class Job:
    """One input file and everything needed to segment it (the unit of work)."""

    input: str
    output: str
    prompts: dict | None = None
    settings: Settings = field(default_factory=Settings)
    fingerprint: str = ""
    all_series: bool = False  # one series of a DICOM input run with --series all


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
    if s.get("segments") is None:  # outputs made before segment names existed stay current
        s.pop("segments")
    p = {repr(k): asdict(v) for k, v in sorted((prompts or {}).items())}
    return _digest({"prompts": p, "settings": s, "model": asdict(model)})


def check_existing(job: Job) -> FileResult | None:
    """A ``skipped`` result when a complete output exists and overwriting is off."""
    out = Path(job.output)
    if job.settings.overwrite or not out.exists():
        return None
    rec = O.read_output_record(out)
    if rec is None:
        if O.is_foreign(out):  # e.g. ground truth named <stem>_labels.tif: never replaced
            return FileResult(
                job.input,
                job.output,
                FAILED,
                f"{out} exists and was not written by napari-sam2 segment (your own "
                "labels?): left untouched; --overwrite replaces it, --out DIR writes elsewhere",
            )
        return None  # truncated or unreadable: redo it
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
        result = FileResult(job.input, job.output, FAILED, one_line(e))
    except Exception as e:  # noqa: BLE001 - one bad file never stops the others
        if reraise_unexpected:
            raise
        result = FileResult(job.input, job.output, FAILED, f"{type(e).__name__}: {one_line(e)}")
    result.seconds = time.perf_counter() - t0
    return result


def one_line(e: BaseException) -> str:
    """An error's first line (its type name when it has no message): a result's reason."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_image(job: Job, lazy: bool | None = None):
    """(Image, set_image keywords) of the job's input."""
    st = job.settings
    img = F.read_image(Path(job.input), st.series, lazy=lazy, all_series=job.all_series)
    axes, data = img.axes, img.data
    kwargs = dict(
        contrast_limits=st.contrast_limits,
        rgb=axes.endswith("S") and data.shape[-1] in (3, 4),
        channel_axis=axes.index("C") if "C" in axes else None,
        channel=st.channel,
    )
    return img, kwargs


def kept_axes(img) -> list[int]:
    """The image axes the labels have (no channel, no RGB)."""
    return [i for i, a in enumerate(img.axes) if a not in "CS"] if img.axes else list(
        range(img.data.ndim)
    )  # fmt: skip


def leading_names(img, src) -> str:
    """Axis letters of the plane index (``TZ`` for TZYX), or "" when unknown."""
    if img.axes and len(img.axes) == img.data.ndim:
        return "".join(img.axes[a] for a in src.leading_axes)
    return ""


def auto_planes(job: Job, img, src) -> tuple[list, list[str]]:
    """The planes ``--auto`` segments in this file (see ``_planes``), and notes."""
    planes, notes = resolve_planes(job.settings.planes, src.index_shape, leading_names(img, src))
    return [tuple(src.check_index(p)) for p in dict.fromkeys(planes)], notes


def provenance(job: Job, seg_description: dict, prompted: list, objects: dict, img) -> dict:
    st = job.settings
    return {
        "source_image": str(Path(job.input).resolve()),
        "plane": list(prompted[0]) if len(prompted) == 1 else [list(p) for p in prompted],
        "command": F.COMMAND,
        **seg_description,
        "objects": objects,
        "batch": {
            "fingerprint": job.fingerprint,
            "auto": st.auto,
            "propagate": st.propagate,
            **({"segments": st.segments} if st.segments else {}),
        },
        "input": img.extra,
    }


def _from_end(plane, shape) -> tuple:
    """Negative indices count from the end of their axis (``-1``: the last plane)."""
    if len(plane) != len(shape):
        return tuple(plane)
    return tuple(
        int(i) + n if -n <= int(i) < 0 else int(i) for i, n in zip(plane, shape, strict=True)
    )


def _segment(job: Job, seg, on_plane) -> FileResult:
    st = job.settings
    prompts = job.prompts or {}
    if not prompts and not st.auto:
        raise F.InputError("no prompts for this file (give --prompts, --points/--boxes or --auto)")
    out = Path(job.output)
    O.remove_stale_partials(out)
    img, kwargs = open_image(job)
    seg.set_image(img.data, **kwargs)
    src = seg.source
    labels = np.zeros(src.index_shape + src.plane_shape, dtype=np.int32)
    objects: dict = {}
    notes: list[str] = list(img.notes)
    planes = 0
    prompted = []
    for plane, pp in sorted(prompts.items()):
        if src.index_shape and not plane:
            raise F.InputError(
                f"the image has non-spatial axes of shape {src.index_shape}: prompts need a plane "
                f"(--plane {','.join(str(n // 2) for n in src.index_shape)}, or the CSV's "
                "plane column)"
            )
        plane = tuple(src.check_index(_from_end(plane, src.index_shape)))
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
        todo, more = auto_planes(job, img, src)
        notes += more
        for plane in todo:
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
        from ..engine.propagation.motion import kind_of_axis

        kind = kind_of_axis(str(getattr(img, "axes", "") or "")[:1])  # T: objects move
        for plane in prompted:
            report = seg.propagate(labels, plane, axis=0, axis_kind=kind)
            notes.append(
                f"propagated from plane {list(plane)} along axis 0: {report.summary()} "
                f"({report.stop_reasons()})"
            )
        planes = int(np.count_nonzero(labels.reshape(*src.index_shape, -1).any(axis=-1)))
    prov = provenance(job, seg.describe(), prompted, objects, img)
    notes += O.atomic_save(out, labels, prov, img, kept_axes(img))
    return FileResult(job.input, job.output, DONE, objects=sorted(objects), planes=planes,
                      notes=notes)  # fmt: skip
