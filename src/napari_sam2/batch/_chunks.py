"""Planes of very large stacks as the unit of work.

An ``--auto`` stack (no prompts, no propagation: every plane is independent) is split into
plane ranges, *chunks*.  Each chunk is segmented by its own task (with the whole stack set
as the image, so the normalisation is the stack's) into a hidden ``.npy`` next to the
output, written under a temporary name and renamed.  One more task assembles the chunks
into the output (one atomic write, in the output's format) and deletes them.  A run that stops
early (killed, cancelled, a failed range) leaves the finished ranges: the next run for that
output reuses those made from the same input, fingerprint and split and redoes the rest
(see ``_ranges``).

IDs: a chunk numbers its objects from 1, plane after plane, in the order
``Segmenter.segment_everything`` gives them on an empty plane; the assembly adds the
number of IDs used by the chunks before it.  That is exactly what the unchunked run writes
(new IDs from ``max + 1``, plane after plane), so both give the same labels.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _files as F
from . import _outputs as O
from . import _ranges as R
from ._results import DONE, FAILED, FileResult, reused_note
from ._work import EXPECTED, Job, auto_planes, kept_axes, one_line, open_image, provenance

PLANES_PER_CHUNK = 32
"""Default chunk size on a cluster (SAM 2 on a GPU: tens of seconds per chunk)."""
AUTO_SPLIT_ABOVE = 2 * PLANES_PER_CHUNK
"""On a cluster, without ``plane_chunks``, stacks with more planes to do are split."""


@dataclass
class Chunk:
    """Some planes of one file (a task)."""

    job: Job
    index: int
    count: int
    planes: list
    path: str  # the chunk's labels, (len(planes), H, W) int32 .npy
    signature: dict = field(default_factory=dict)  # the input's version (``_ranges``)
    reuse: dict | None = None  # the record of a complete range file made earlier


@dataclass
class ChunkResult:
    index: int
    path: str
    planes: list
    counts: list = field(default_factory=list)  # objects per plane
    description: dict = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    reused: bool = False  # the range file of an earlier run was used


def eligible(job: Job) -> bool:
    """Only ``--auto`` without prompts or propagation has independent planes."""
    st = job.settings
    return bool(st.auto and not st.propagate and not job.prompts)


def _source(img, kwargs):
    from ..engine.planes import PlaneSource

    return PlaneSource(img.data, rgb=kwargs["rgb"], channel_axis=kwargs["channel_axis"],
                       channel=kwargs["channel"])  # fmt: skip


def plan_chunks(job: Job, n: int | None, *, fresh: bool | None = None) -> list[Chunk] | None:
    """The chunks of ``job``, or None when it stays one task.

    ``n``: the number of chunks; None: automatic (ranges of :data:`PLANES_PER_CHUNK`
    planes for more than :data:`AUTO_SPLIT_ABOVE` planes).  Reads only the input's
    shape (lazily); a file that cannot be read stays one task, which reports why.
    The complete range files of an earlier run that match are kept (``chunk.reuse``),
    other partial files of the output are deleted; ``fresh`` (default: the job's
    ``overwrite``) deletes them all.
    """
    if not eligible(job) or n == 1:
        return None
    try:
        img, kwargs = open_image(job, lazy=True)
        src = _source(img, kwargs)
        planes, _ = auto_planes(job, img, src)
        signature = R.input_signature(job.input)
    except Exception:  # noqa: BLE001 - the whole-file task gives the reason
        return None
    if n is None:
        if len(planes) <= AUTO_SPLIT_ABOVE:
            return None
        n = math.ceil(len(planes) / PLANES_PER_CHUNK)
    n = min(int(n), len(planes))
    if n < 2:
        return None
    out = Path(job.output)
    bounds = np.linspace(0, len(planes), n + 1).round().astype(int)
    chunks = [
        Chunk(job, i, n, planes[a:b], str(R.range_path(out, i, n)), signature)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]  # fmt: skip
    R.prepare(out, chunks, src.plane_shape, job.settings.overwrite if fresh is None else fresh)
    return chunks


def run_chunk(
    chunk: Chunk, seg, *, on_plane=None, reraise_unexpected: bool = False
) -> ChunkResult:
    """Segment the chunk's planes; write them to ``chunk.path`` and its record (each:
    temporary name, rename).  A range marked as reused is not segmented again."""
    from ..engine.errors import NapariSam2Error

    res = ChunkResult(chunk.index, chunk.path, chunk.planes)
    if chunk.reuse is not None and R.still_there(chunk):
        res.counts = [int(n) for n in chunk.reuse["counts"]]
        res.description = dict(chunk.reuse.get("description") or {})
        res.reused = True
        for _ in chunk.planes if on_plane else ():
            on_plane()
        return res
    try:
        out, res.counts, res.description = segment_range(chunk, seg, on_plane)
        R.write(chunk, out, res.counts, res.description)
    except (NapariSam2Error, *EXPECTED) as e:
        res.error = one_line(e)
    except Exception as e:  # noqa: BLE001
        if reraise_unexpected:
            raise
        res.error = f"{type(e).__name__}: {one_line(e)}"
    return res


def segment_range(chunk: Chunk, seg, on_plane=None) -> tuple[np.ndarray, list, dict]:
    """(labels of the chunk's planes, objects per plane, segmenter description)."""
    img, kwargs = open_image(chunk.job)
    seg.set_image(img.data, **kwargs)
    src = seg.source
    out = np.zeros((len(chunk.planes), *src.plane_shape), np.int32)
    counts: list = []
    running = 0
    for k, plane in enumerate(chunk.planes):
        lab = np.asarray(seg.segment_everything(None, tuple(plane)))
        ids = np.unique(lab[lab > 0])
        if ids.size:
            lut = np.zeros(int(ids.max()) + 1, np.int32)
            lut[ids] = np.arange(running + 1, running + 1 + ids.size)
            out[k] = lut[lab]
        counts.append(int(ids.size))
        running += int(ids.size)
        if on_plane:
            on_plane()
    return out, counts, seg.describe()


def assemble(job: Job, results: list[ChunkResult], t0: float | None = None) -> FileResult:
    """One output from the chunks (atomic write), then the chunk files are deleted.  When
    the file fails, the complete chunk files stay for the next run (``_ranges``)."""
    results = sorted(results, key=lambda r: r.index)
    start = time.perf_counter() if t0 is None else t0
    try:
        bad = [r for r in results if r.error]
        if bad:
            res = FileResult(job.input, job.output, FAILED, bad[0].error)
        else:
            res = _assemble(job, results)
    except Exception as e:  # noqa: BLE001 - one bad file never stops the others
        res = FileResult(job.input, job.output, FAILED, f"{type(e).__name__}: {one_line(e)}")
    for r in results:
        if res.status == DONE or r.error:
            R.remove(r.path)
    res.seconds = time.perf_counter() - start
    return res


def _assemble(job: Job, results: list[ChunkResult]) -> FileResult:
    img, kwargs = open_image(job, lazy=True)
    src = _source(img, kwargs)
    labels = np.zeros(src.index_shape + src.plane_shape, np.int32)
    objects: dict = {}
    done: list = []
    offset = 0
    for r in results:
        arr = np.load(r.path, mmap_mode="r", allow_pickle=False)
        if arr.shape != (len(r.planes), *src.plane_shape):
            raise F.InputError(f"chunk {r.index} has shape {arr.shape}: the input changed")
        for k, plane in enumerate(r.planes):
            plane = tuple(plane)
            lab = np.asarray(arr[k])
            labels[plane] = np.where(lab > 0, lab + offset, 0)
            first = offset + sum(r.counts[:k])
            for i in range(first + 1, first + r.counts[k] + 1):
                objects[i] = {"automatic": True, "plane": list(plane)}
            done.append(plane)
        offset += sum(r.counts)
        del arr
    prov = provenance(job, results[0].description, done, objects, img)
    notes = [*img.notes, f"split into {len(results)} plane ranges"]
    reused = sum(r.reused for r in results)
    if reused:
        notes.append(reused_note(reused, len(results)))
    notes += O.atomic_save(Path(job.output), labels, prov, img, kept_axes(img))
    workers = sorted({r.worker for r in results if r.worker})
    return FileResult(job.input, job.output, DONE, objects=sorted(objects), planes=len(done),
                      notes=notes, worker=", ".join(workers))  # fmt: skip


def run_chunked(job: Job, chunks: list[Chunk], seg, *, on_plane=None) -> FileResult:
    """In-process: the chunks one after the other, then the assembly."""
    t0 = time.perf_counter()
    results = []
    for c in chunks:
        r = run_chunk(c, seg, on_plane=on_plane)
        results.append(r)
        if r.error:
            break
    return assemble(job, results, t0)
