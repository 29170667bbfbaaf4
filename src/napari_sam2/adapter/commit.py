"""Commit a preview into a Labels layer without freezing the GUI.

A commit is split in three:

1. :func:`begin_commit` (main thread, fast): checks, the next free ID (cached), the
   widening of the dtype, a copy of the labels plane and the layer's *version* (a counter
   the session bumps on every paint, undo, redo or data change of the layer).
2. :func:`plan_commit` (worker thread): plans the object writes against that copy
   (:func:`napari_sam2.engine.edits.plan_edits`) and cuts the change of the plane into
   row bands of the union bounding box (:class:`Chunk`: changed pixels, old and new values).
3. :class:`ChunkedWriter` (main thread, several event-loop turns): each :meth:`step`
   writes bands until a pixel budget is used, bbox-local with basic slicing, after checking
   that the band still holds the planned old values.  :meth:`finish` records the bands as
   **one** undo step (napari's history atoms, the same ``(indices, old, new)`` form that
   ``Labels.data_setitem`` records) and refreshes the layer once.

All or nothing: when the layer's version changed, a band no longer holds its planned old
values, or a write fails, :meth:`ChunkedWriter.rollback` puts the old values back (only
where our values still stand) and the commit raises :class:`CommitConflict` (re-plan) or
the error.  The labels are never left half-written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..engine.backends.base import Prediction
from ..engine.edits import plan_edits
from ..engine.errors import LabelsError, PromptError
from ..engine.labels import KEEP, OVERWRITE, LabelEdit
from .layers import ensure_fits, labels_matching
from .orientation import Orientation

CHUNK_PX = 256 * 1024  # bounding-box pixels per band (~5-15 ms to check and write)
STEP_PX = 512 * 1024  # pixels written per event-loop turn


class CommitConflict(LabelsError):
    """The labels changed between planning and writing: plan again."""


@dataclass(frozen=True)
class Chunk:
    """A band of rows of one labels plane: the changed pixels with old and new values."""

    key: tuple  # plane index ints + (rows slice, cols slice): basic slicing only
    mask: np.ndarray  # (rows, cols) bool: pixels that change
    old: np.ndarray  # 1-D values under ``mask`` before the write
    new: np.ndarray  # 1-D values under ``mask`` after it

    indices: tuple = ()  # the changed pixels' fancy index over the whole labels array

    def atom(self) -> tuple:
        """napari's legacy history atom ``(indices, old values, new values)``."""
        return self.indices or _indices(self), self.old, self.new


def _indices(chunk: Chunk) -> tuple:
    rr, cc = np.nonzero(chunk.mask)
    lead = tuple(np.full(rr.size, i, np.intp) for i in chunk.key[:-2])
    return lead + (rr + chunk.key[-2].start, cc + chunk.key[-1].start)


@dataclass
class CommitJob:
    """What a widget commit needs between its main-thread and worker-thread parts."""

    layer: object
    result: object  # the session's Result
    plane: tuple
    version: int
    plane_copy: np.ndarray
    preds: list
    label_id: int | None
    start_id: int | None
    policy: str
    edits: list[LabelEdit] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    max_before: int | None = None  # the layer's cached max ID when the job began
    attempts: int = 0
    orientation: Orientation | None = None  # the displayed axes (None: the last two)

    def labels(self):
        """The layer's labels with the plane's axes last (the orientation's view):
        ``plane`` and the chunks' keys index it."""
        data = self.layer.data
        return data if self.orientation is None else self.orientation.view(data)

    @property
    def ids(self) -> list[int]:
        return [e.label_id for e in self.edits if e.size]

    @property
    def pixels(self) -> int:
        return int(sum(c.old.size for c in self.chunks))


def begin_commit(session, result=None) -> CommitJob:
    """Main-thread part: the same checks as ``SegmentationSession.commit``; fast.

    ``result``: the preview to commit (default: the session's current one).
    """
    res = session.result if result is None else result
    if res is None:
        raise PromptError("Nothing to commit: press Segment first.")
    if not session.is_current(res.request) and not session.shows_plane_of(res.request):
        raise PromptError("The preview belongs to another plane: segment again here.")
    msg = labels_matching(session.labels_layer, res.request.image_layer)
    if msg:
        raise LabelsError(msg)
    layer = session.labels_layer
    masks = res.masks()
    if not any(m.any() for m in masks):
        raise PromptError("The predicted mask is empty: nothing was written.")
    rid = res.request.refine_id
    start = None if rid is not None else session._next_id(layer)
    if ensure_fits(layer, rid if rid is not None else start + len(masks) - 1):
        session.notices.append(
            f"Labels layer '{layer.name}' widened to {layer.data.dtype} for more IDs "
            "(the undo history starts again)."
        )
    plane = tuple(res.request.plane)
    orient = res.request.oriented()
    return CommitJob(
        layer=layer,
        result=res,
        plane=plane,
        version=session.labels_version,
        plane_copy=np.array(orient.view(layer.data)[plane]),
        preds=[Prediction(m[None], np.ones(1)) for m in masks],
        label_id=rid,
        start_id=start,
        policy=OVERWRITE if session.overwrite else KEEP,
        max_before=session._max_cache.get(id(layer)),
        orientation=orient,
    )


def plan_commit(job: CommitJob, chunk_px: int = CHUNK_PX) -> CommitJob:
    """Worker part: plan the edits against the plane copy and cut them into bands."""
    before = job.plane_copy
    job.edits = plan_edits(
        before,
        job.preds,
        (),
        label_id=job.label_id,
        policy=job.policy,
        replace=job.label_id is not None,
        start_id=job.start_id,
    )
    after = before.copy()
    for e in job.edits:  # in order, as write_edits would apply them
        after[e.indices] = e.values
    job.chunks = plane_chunks(before, after, job.plane, chunk_px)
    if job.orientation is not None and not job.orientation.identity:
        # the undo history holds indices in the labels array's own axis order
        o = job.orientation
        job.chunks = [dataclasses.replace(c, indices=o.data_index(c.indices)) for c in job.chunks]
    return job


def plane_chunks(before: np.ndarray, after: np.ndarray, plane, chunk_px: int = CHUNK_PX):
    """Row bands of the changed pixels' bounding box, each at most ``chunk_px`` pixels."""
    changed = before != after
    rows = np.flatnonzero(changed.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(changed.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    band = max(1, int(chunk_px) // max(1, c1 - c0))
    out = []
    for a in range(r0, r1, band):
        b = min(r1, a + band)
        m = changed[a:b, c0:c1]
        if not m.any():
            continue
        key = tuple(int(i) for i in plane) + (slice(int(a), int(b)), slice(int(c0), int(c1)))
        chunk = Chunk(key, m, before[a:b, c0:c1][m], after[a:b, c0:c1][m])
        out.append(dataclasses.replace(chunk, indices=_indices(chunk)))
    return out


class ChunkedWriter:
    """Writes a job's bands across event-loop turns; see the module docstring.

    ``version`` is a callable returning the layer's current version (the session's
    counter); a change since the plan is a conflict.
    """

    def __init__(self, job: CommitJob, version, step_px: int = STEP_PX):
        self.job = job
        self.layer = job.layer
        self._version = version
        self.step_px = int(step_px)
        self.todo = list(job.chunks)
        self.written: list[Chunk] = []
        self.steps = 0

    @property
    def done(self) -> bool:
        return not self.todo

    def _check_version(self) -> None:
        if self._version() != self.job.version or getattr(self.layer, "_block_history", False):
            raise CommitConflict("The labels changed while the commit was planned.")

    def step(self) -> bool:
        """Write bands until ``step_px`` pixels are used (at least one); True when all are
        written.  On a conflict or an error everything written is rolled back first."""
        try:
            self._check_version()
            budget = self.step_px
            while self.todo and budget > 0:
                _write(self.job.labels(), self.todo[0])
                chunk = self.todo.pop(0)
                self.written.append(chunk)
                budget -= chunk.mask.size
        except BaseException:
            self.rollback()
            raise
        self.steps += 1
        return self.done

    def finish(self) -> list[int]:
        """Record what was written as one undo step and refresh the layer; the IDs."""
        try:
            self._check_version()
        except CommitConflict:
            self.rollback()
            raise
        layer = self.layer
        save = getattr(layer, "_save_history", None)
        if save is not None and self.written:
            with layer.block_history():
                for chunk in self.written:
                    save(chunk.atom())
        layer.refresh()
        return self.job.ids

    def rollback(self) -> None:
        """Put the old values back where our new values still stand; refresh."""
        data = self.job.labels()
        for chunk in reversed(self.written):
            region = np.array(data[chunk.key])
            ours = region[chunk.mask] == chunk.new
            vals = region[chunk.mask]
            vals[ours] = chunk.old[ours]
            region[chunk.mask] = vals
            data[chunk.key] = region
        self.written = []
        self.layer.refresh()


def _write(data, chunk: Chunk) -> None:
    """Check one band still holds its old values, then write its new ones."""
    region = np.array(data[chunk.key])
    if not np.array_equal(region[chunk.mask], chunk.old):
        raise CommitConflict("The labels changed where the object is being written.")
    region[chunk.mask] = chunk.new
    data[chunk.key] = region


def finish_job(session, job: CommitJob, ids: list[int]) -> list[int]:
    """Main thread, after :meth:`ChunkedWriter.finish`: the max-ID cache, provenance and
    the notices, as ``SegmentationSession.commit`` does; returns ``ids``."""
    from .session import _nothing_new

    res = job.result
    if session.result is res:
        session.result = None
    if not ids:
        session.notices.append(_nothing_new(job.labels(), job.plane, res.masks(), job.label_id))
        return []
    if job.max_before is not None:  # the write's paint event emptied the cache
        session._max_cache[id(job.layer)] = max([job.max_before, *ids])
    session._record(res, [(e.label_id, e.object_index) for e in job.edits if e.size])
    return ids


def write_now(job: CommitJob, version) -> list[int]:
    """Plan and write a job in one go (scripts, tests, small objects)."""
    writer = ChunkedWriter(plan_commit(job), version, step_px=np.iinfo(np.int64).max)
    writer.step()
    return writer.finish()
