"""Planes of very large stacks as the unit of work.

An ``--auto`` stack (no prompts, no propagation: every plane is independent) is split into
plane ranges, *chunks*.  Each chunk is segmented by its own task (with the whole stack set
as the image, so the normalisation is the stack's) into a hidden ``.npy`` next to the
output, written under a temporary name and renamed.  One more task assembles the chunks
into the output (one atomic write, in the output's format) and deletes them; a killed run
leaves only hidden partial files, which the next run for that output deletes.

IDs: a chunk numbers its objects from 1, plane after plane, in the order
``Segmenter.segment_everything`` gives them on an empty plane; the assembly adds the
number of IDs used by the chunks before it.  That is exactly what the unchunked run writes
(new IDs from ``max + 1``, plane after plane), so both give the same labels.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _files as F
from . import _outputs as O
from ._results import DONE, FAILED, FileResult
from ._work import EXPECTED, Job, auto_planes, kept_axes, open_image, provenance

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


@dataclass
class ChunkResult:
    index: int
    path: str
    planes: list
    counts: list = field(default_factory=list)  # objects per plane
    description: dict = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None


def eligible(job: Job) -> bool:
    """Only ``--auto`` without prompts or propagation has independent planes."""
    st = job.settings
    return bool(st.auto and not st.propagate and not job.prompts)


def _source(img, kwargs):
    from ..engine.planes import PlaneSource

    return PlaneSource(img.data, rgb=kwargs["rgb"], channel_axis=kwargs["channel_axis"],
                       channel=kwargs["channel"])  # fmt: skip


def plan_chunks(job: Job, n: int | None) -> list[Chunk] | None:
    """The chunks of ``job``, or None when it stays one task.

    ``n``: the number of chunks; None: automatic (ranges of :data:`PLANES_PER_CHUNK`
    planes for more than :data:`AUTO_SPLIT_ABOVE` planes).  Reads only the input's
    shape (lazily); a file that cannot be read stays one task, which reports why.
    """
    if not eligible(job) or n == 1:
        return None
    try:
        img, kwargs = open_image(job, lazy=True)
        planes, _ = auto_planes(job, img, _source(img, kwargs))
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
    O.remove_stale_partials(out)
    token = f"{os.getpid()}-{secrets.token_hex(3)}"
    bounds = np.linspace(0, len(planes), n + 1).round().astype(int)
    return [
        Chunk(job, i, n, planes[a:b], str(out.with_name(f".{out.name}{F.PARTIAL}{token}-c{i:04d}.npy")))
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]  # fmt: skip


def run_chunk(
    chunk: Chunk, seg, *, on_plane=None, reraise_unexpected: bool = False
) -> ChunkResult:
    """Segment the chunk's planes; write them to ``chunk.path`` (temporary name, rename)."""
    from ..engine.errors import NapariSam2Error

    res = ChunkResult(chunk.index, chunk.path, chunk.planes)
    try:
        img, kwargs = open_image(chunk.job)
        seg.set_image(img.data, **kwargs)
        src = seg.source
        out = np.zeros((len(chunk.planes), *src.plane_shape), np.int32)
        running = 0
        for k, plane in enumerate(chunk.planes):
            lab = np.asarray(seg.segment_everything(None, tuple(plane)))
            ids = np.unique(lab[lab > 0])
            if ids.size:
                lut = np.zeros(int(ids.max()) + 1, np.int32)
                lut[ids] = np.arange(running + 1, running + 1 + ids.size)
                out[k] = lut[lab]
            res.counts.append(int(ids.size))
            running += int(ids.size)
            if on_plane:
                on_plane()
        res.description = seg.describe()
        Path(chunk.path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{chunk.path}.{os.getpid()}-{secrets.token_hex(3)}.npy"
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, out)
            os.replace(tmp, chunk.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (NapariSam2Error, *EXPECTED) as e:
        res.error = _one_line(e)
    except Exception as e:  # noqa: BLE001
        if reraise_unexpected:
            raise
        res.error = f"{type(e).__name__}: {_one_line(e)}"
    return res


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def assemble(job: Job, results: list[ChunkResult], t0: float | None = None) -> FileResult:
    """One output from the chunks (atomic write); the chunk files are deleted."""
    results = sorted(results, key=lambda r: r.index)
    paths = [r.path for r in results]
    start = time.perf_counter() if t0 is None else t0
    try:
        bad = [r for r in results if r.error]
        if bad:
            res = FileResult(job.input, job.output, FAILED, bad[0].error)
        else:
            res = _assemble(job, results)
    except Exception as e:  # noqa: BLE001 - one bad file never stops the others
        res = FileResult(job.input, job.output, FAILED, f"{type(e).__name__}: {_one_line(e)}")
    finally:
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)
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
    notes = [f"split into {len(results)} plane ranges"]
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
