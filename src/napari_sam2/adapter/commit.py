"""The one commit pipeline: a preview (plain, tiled or large) into a Labels layer.

Every commit runs the same four stages, whatever the preview:

1. :func:`begin_commit` (main thread, fast): the checks, the *window* of the labels plane
   the preview can change (the whole plane; for a tiled preview only its masks' bounding
   box, :class:`napari_sam2.adapter.tiles.Placement`), the masks on that window, the next
   free ID (the session's cache), the widening of the dtype (with its notice), a view or a
   copy of the window and the layer's *version* (a counter the session bumps on every
   paint, undo, redo or data change of the layer).
2. :func:`plan_commit` (a worker thread for large objects): plans the object writes
   against that window (:func:`napari_sam2.engine.edits.plan_edits`) and cuts the change
   into row bands (:class:`Chunk`: changed pixels, old and new values).
3. The write, always **one** undo step.  :func:`commit_preview` (the one commit function)
   writes at once through ``Labels.data_setitem``
   (:func:`~napari_sam2.adapter.layers.write_edits`), or with ``chunk_px`` in bands through
   :class:`ChunkedWriter`, all in the call.  The widget
   writes large objects with :class:`ChunkedWriter` across event-loop turns: each
   :meth:`~ChunkedWriter.step` writes bands until a pixel budget is used, after checking
   that the band still holds the planned old values; :meth:`~ChunkedWriter.finish` records
   the bands as one undo step (napari's history atoms, the ``(indices, old, new)`` form
   ``Labels.data_setitem`` records) and refreshes the layer once.
4. :func:`finish_job` (main thread): the "nothing new" notice, the max-ID cache and the
   provenance (``session.record_commit``).

All or nothing: when the layer's version changed, a band no longer holds its planned old
values, or a write fails, :meth:`ChunkedWriter.rollback` puts the old values back (only
where our values still stand) and the commit raises :class:`CommitConflict` (re-plan) or
the error; :func:`~napari_sam2.adapter.layers.write_edits` rolls back the same way.  The
labels are never left half-written.

``session`` is a :class:`~napari_sam2.adapter.session.SegmentationSession` (its public
commit API: ``result``, ``is_current``, ``shows_plane_of``, ``labels_layer``, ``overwrite``,
``labels_version``, ``next_id``, ``cached_max``, ``fit_ids``, ``notices``,
``record_commit``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..engine.backends.base import Prediction
from ..engine.edits import plan_edits
from ..engine.errors import LabelsError, PromptError
from ..engine.labels import KEEP, OVERWRITE, LabelEdit
from .layers import labels_matching, painting, save_history, write_edits
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
    """One commit between its stages (see the module docstring)."""

    layer: object
    result: object  # the session's Result
    plane: tuple
    window: tuple[slice, slice]  # the rows/cols of the plane the commit may change
    version: int
    region: np.ndarray  # the labels in ``window`` (a copy when planned in a worker)
    masks: list[np.ndarray]  # the objects on ``window``
    label_id: int | None
    start_id: int | None
    policy: str
    edits: list[LabelEdit] = field(default_factory=list)  # window-local indices
    chunks: list[Chunk] = field(default_factory=list)
    max_before: int | None = None  # the layer's cached max ID when the job began
    attempts: int = 0
    orientation: Orientation | None = None  # the displayed axes (None: the last two)

    def labels(self):
        """The layer's labels with the plane's axes last (the orientation's view, through
        which writes reach the layer): ``plane`` and the chunks' keys index it."""
        data = self.layer.data
        return data if self.orientation is None else self.orientation.view(data)

    @property
    def ids(self) -> list[int]:
        return [e.label_id for e in self.edits if e.size]

    @property
    def written(self) -> list[tuple[int, int | None]]:
        """``(label_id, object_index)`` of the objects that change pixels (provenance)."""
        return [(e.label_id, e.object_index) for e in self.edits if e.size]

    @property
    def pixels(self) -> int:
        return int(sum(c.old.size for c in self.chunks))

    def placed(self, edit: LabelEdit) -> LabelEdit:
        """``edit`` (window-local) with indices over the whole labels array."""
        rr, cc = edit.indices[-2:]
        lead = tuple(np.full(rr.shape, i, np.intp) for i in self.plane)
        idx = lead + (rr + self.window[0].start, cc + self.window[1].start)
        if self.orientation is not None:  # in the labels array's own axis order
            idx = self.orientation.data_index(idx)
        return dataclasses.replace(edit, indices=idx)


def _window(res) -> tuple[tuple[slice, slice], list[np.ndarray]]:
    """The window of the plane ``res`` can change and its masks there; raises when empty.

    A tiled preview (``info["placement"]``) covers only its masks' bounding box, read
    and written bbox-local; any other preview covers the whole plane.
    """
    placement = res.info.get("placement")
    masks = res.masks()
    if placement is None:
        if not any(m.any() for m in masks):
            raise PromptError("The predicted mask is empty: nothing was written.")
        h, w = masks[0].shape
        return (slice(0, h), slice(0, w)), masks
    parts = [placement.full_window(m) for m in masks]
    found = [p[0] for p in parts if p is not None]
    if not found:
        raise PromptError("The predicted mask is empty: nothing was written.")
    window = tuple(
        slice(min(w[i].start for w in found), max(w[i].stop for w in found)) for i in (0, 1)
    )
    return window, [placement.upsample(m, window) for m in masks]


def begin_commit(session, result=None, *, copy: bool = True, any_plane: bool = False) -> CommitJob:
    """Main-thread stage of every commit: the checks, IDs, widening; fast.

    ``result``: the preview to commit (default: the session's current one); ``copy``:
    copy the labels window (needed when the plan runs while the user may paint);
    ``any_plane``: commit into the result's plane even when another plane is viewed now
    (a Commit pressed while that result was on its way, see ``widget/_commit.py``).
    """
    res = session.result if result is None else result
    if res is None:
        raise PromptError("Nothing to commit: press Segment first.")
    if (
        not any_plane
        and not session.is_current(res.request)
        and not session.shows_plane_of(res.request)
    ):
        raise PromptError("The preview belongs to another plane: segment again here.")
    layer = session.labels_layer
    msg = labels_matching(layer, res.request.image_layer)
    if msg:
        raise LabelsError(msg)
    window, masks = _window(res)
    rid = res.request.refine_id
    start = None if rid is not None else session.next_id(layer)
    max_before = session.cached_max(layer)  # the write's paint event empties the cache
    session.fit_ids(layer, rid if rid is not None else start + len(masks) - 1)
    plane = tuple(res.request.plane)
    orient = res.request.oriented()
    region = orient.view(layer.data)[plane + window]  # a view of numpy data, else one read
    return CommitJob(
        layer=layer,
        result=res,
        plane=plane,
        window=window,
        version=session.labels_version,
        region=np.array(region) if copy else np.asarray(region),
        masks=masks,
        label_id=rid,
        start_id=start,
        policy=OVERWRITE if session.overwrite else KEEP,
        max_before=max_before,
        orientation=orient,
    )


def _plan(job: CommitJob) -> CommitJob:
    job.edits = plan_edits(
        job.region,
        [Prediction(m[None], np.ones(1)) for m in job.masks],
        (),
        label_id=job.label_id,
        policy=job.policy,
        replace=job.label_id is not None,
        start_id=job.start_id,
    )
    return job


def plan_commit(job: CommitJob, chunk_px: int = CHUNK_PX) -> CommitJob:
    """Worker stage: plan the edits against the window and cut them into bands."""
    before = _plan(job).region
    after = before.copy()
    for e in job.edits:  # in order, as write_edits would apply them
        after[e.indices] = e.values
    origin = (job.window[0].start, job.window[1].start)
    job.chunks = plane_chunks(before, after, job.plane, chunk_px, origin)
    o = job.orientation
    if o is not None and not o.identity:  # the undo history: the labels' own axis order
        job.chunks = [dataclasses.replace(c, indices=o.data_index(c.indices)) for c in job.chunks]
    return job


def commit_preview(
    session,
    result=None,
    *,
    any_plane: bool = False,
    chunk_px: int | None = None,
    step_px: int = STEP_PX,
) -> list[int]:
    """Write a preview (plain, tiled or large) as one undo step; returns the IDs.

    The one commit function: every commit runs :func:`begin_commit`, the plan and
    :func:`finish_job`.  By default the edits are written at once with
    ``Labels.data_setitem``; ``chunk_px``: in row bands of about that many pixels through
    :class:`ChunkedWriter` (``step_px`` per step), all in this call (the widget runs the
    same stages across event-loop turns).  ``any_plane``: see :func:`begin_commit`.
    """
    job = begin_commit(session, result, copy=chunk_px is not None, any_plane=any_plane)
    if chunk_px is None:
        ids = write_edits(job.layer, [job.placed(e) for e in _plan(job).edits])
        return finish_job(session, job, ids)
    writer = ChunkedWriter(plan_commit(job, chunk_px), lambda: session.labels_version, step_px)
    while not writer.step():
        pass
    return finish_job(session, job, writer.finish())


def plane_chunks(
    before: np.ndarray, after: np.ndarray, plane, chunk_px: int = CHUNK_PX, origin=(0, 0)
):
    """Row bands of the changed pixels' bounding box, each at most ``chunk_px`` pixels.

    ``before``/``after``: a window of the plane whose first pixel is ``origin`` (rows,
    cols) of the plane; the bands' keys are over the whole labels array."""
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
        r, c = int(origin[0]), int(origin[1])
        rows_, cols_ = slice(r + int(a), r + int(b)), slice(c + int(c0), c + int(c1))
        key = tuple(int(i) for i in plane) + (rows_, cols_)
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
        if self._version() != self.job.version or painting(self.layer):
            raise CommitConflict("The labels changed while the commit was planned.")

    def step(self) -> bool:
        """Write bands until ``step_px`` pixels are used (at least one); True when all are
        written.  On a conflict or an error everything written is rolled back first."""
        try:
            self._check_version()
            budget = self.step_px
            while self.todo and budget > 0:
                write_chunk(self.job.labels(), self.todo[0])
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
        if self.written:
            with layer.block_history():
                save_history(layer, [chunk.atom() for chunk in self.written])
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


def write_chunk(data, chunk: Chunk) -> None:
    """Check one band still holds its old values, then write its new ones."""
    region = np.array(data[chunk.key])
    if not np.array_equal(region[chunk.mask], chunk.old):
        raise CommitConflict("The labels changed where the object is being written.")
    region[chunk.mask] = chunk.new
    data[chunk.key] = region


def finish_job(session, job: CommitJob, ids: list[int]) -> list[int]:
    """Main-thread end of every commit, once written: the notices, the max-ID cache and
    provenance; returns ``ids``."""
    res = job.result
    if session.result is res:
        session.result = None
    if not ids:  # every mask lies on other objects (keep) or reproduces the object
        now = np.asarray(job.labels()[job.plane + job.window])
        session.notices.append(nothing_new(now, job.masks, job.label_id))
        return []
    session.record_commit(job.layer, res, job.written, known_max=job.max_before)
    return ids


def nothing_new(region, masks, refine_id) -> str:
    """The notice for a commit that changes no pixel: which object(s) the mask lies on
    (``region``: the labels under the masks' window)."""
    sel = np.zeros(np.shape(masks[0]), bool)
    for m in masks:
        sel |= m
    under = np.asarray(region)[sel]
    ids = [int(v) for v in np.unique(under) if v]
    if refine_id is not None and ids in ([], [refine_id]):
        return f"Nothing new to write: the mask is object {refine_id} already."
    if not ids:
        return "Nothing new to write: the mask is empty."
    which = f"object {ids[0]}" if len(ids) == 1 else "objects " + ", ".join(map(str, ids))
    return f"Nothing new to write: the mask lies on {which}."
