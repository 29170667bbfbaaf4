"""``segment_files``: many files, in-process or on dask.distributed, one summary."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from . import _files as F
from ._chunks import plan_chunks, run_chunked
from ._planes import parse_plane_spec
from ._prompts import PlanePrompts, PromptTable
from ._results import FAILED, SKIPPED, FileResult, Summary
from ._work import Job, ModelOptions, Settings, check_existing, fingerprint, run_job


class _Bars:
    """tqdm bars for files and planes (stderr)."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.files = tqdm(total=total, unit="file", desc="files", position=0, file=sys.stderr)
        self.planes = tqdm(unit="plane", desc="planes", position=1, file=sys.stderr)

    def __call__(self, event: dict) -> None:
        if event["event"] == "file":
            self.files.update(1)
            r = event["result"]
            self.files.set_postfix_str(f"{r.status} {Path(r.input).name}", refresh=False)
            if event.get("planes_done") is None and r.planes:
                self.planes.update(r.planes)  # cluster: planes arrive with the file
        elif event["event"] == "plane":
            self.planes.update(event.get("count", 1))

    def close(self) -> None:
        self.planes.close()
        self.files.close()


def _prompt_table(prompts) -> PromptTable | dict | None:
    if prompts is None or isinstance(prompts, PromptTable):
        return prompts
    if isinstance(prompts, dict):  # FilePrompts for every input
        if not all(isinstance(v, PlanePrompts) for v in prompts.values()):
            raise TypeError("prompts dict must map plane tuples to PlanePrompts")
        return prompts
    items = [prompts] if isinstance(prompts, (str, os.PathLike)) else list(prompts)
    table = PromptTable()
    for p in items:
        table.read(p)
    return table


def segment_files(
    paths,
    out_dir=None,
    *,
    prompts=None,
    auto: bool = False,
    propagate: bool = False,
    planes=None,
    model: str = "tiny",
    checkpoint=None,
    backend: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    contrast_limits=None,
    channel="mean",
    series: int | str = 0,
    overwrite: bool = False,
    output=None,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    segmenter=None,
    progress=None,
    skip_labels_files: bool = True,
    on_task_start=None,
    dicom_seg: bool = False,
    plane_chunks: int | None = None,
    segments=None,
) -> Summary:
    """Segment many image files and write one labels file per file.

    Parameters
    ----------
    paths : path, glob or list of them
        Input files (TIFF/OME-TIFF; NIfTI/DICOM when napari-sam2's medical readers are
        installed), folders (their image files) and glob patterns.
    out_dir : path, optional
        Outputs go here as ``<stem>_labels.tif`` (``.nii.gz`` for NIfTI/DICOM inputs, in
        the source's voxel order and affine), mirroring the input folders below their
        common parent; default: next to each input.  ``output``: the one output file of a
        single input instead.
    prompts : CSV path(s), PromptTable or {plane: PlanePrompts}, optional
        Prompt CSVs (``file,plane,kind,coordinates,label``) and/or napari Points/Shapes
        CSV exports; a dict applies to every input.  See docs/batch.md.
    auto, propagate : bool
        Segment everything (on ``planes``, default every plane), then / or carry the
        prompted planes' objects through the stack (axis 0).  Each needs the engine
        feature; without it the file fails with the reason.
    planes : str, tuple or list of plane tuples, optional
        The planes of ``auto`` in each file: ``--plane`` text (``"all,12"``, ``"10:20"``,
        ``"-1"``; one item per non-spatial axis), or explicit plane tuples.  A file where
        they do not exist fails with the reason; 2-D images ignore it.
    model, checkpoint, backend, device, precision, image_size :
        As for :class:`napari_sam2.engine.Segmenter` (built once per process/worker).
    contrast_limits, channel, series :
        Normalisation window, channel mode of channel images, TIFF series or DICOM
        series of a folder/DICOMDIR (the others are named in the result's notes; a DICOM
        ``series`` N other than 0 writes ``<stem>_seriesN_labels...``).  ``series="all"``:
        every series of each DICOM input, one job and output each.
    overwrite : bool
        Redo files whose complete output exists (default: skip them; resumable).
    client, scheduler, workers, retries :
        Run on dask.distributed: a ``Client``, a scheduler address, or a LocalCluster of
        ``workers`` processes.  None of them: in-process, without importing distributed.
        ``retries``: extra attempts for a file whose task fails unexpectedly.
    segmenter : Segmenter, optional
        In-process only: use this one instead of building one.
    progress : bool or callable, optional
        True: progress bars on stderr; a callable gets events ``{"event": "file",
        "result", "done", "total"}`` and ``{"event": "plane", "input"}``.
    skip_labels_files : bool
        Skip inputs named ``*_labels.*`` (outputs and ground truth), reported as skipped.
    on_task_start : callable, optional
        Called with each Job when its processing starts (testing, monitoring).
    dicom_seg : bool
        DICOM inputs get a DICOM SEG (``<stem>_labels.dcm``, highdicom) instead of NIfTI.
    segments : mapping or path, optional
        Names and SNOMED CT codes of the DICOM SEG segments per label ID: a mapping as
        for :func:`napari_sam2.io.medical.dicom_seg.save_labels_dicom_seg`, or a JSON/CSV
        file (:func:`napari_sam2.io.medical.segment_codes.read_segment_file`).  Checked
        before any file is segmented.
    plane_chunks : int, optional
        ``auto`` stacks (without prompts/propagation) are split into this many plane
        ranges, one task each, assembled into one output.  None: on a cluster, stacks of
        more than 64 planes in ranges of 32; in-process, no split.

    Returns
    -------
    Summary
        One :class:`FileResult` per input (done / skipped / failed with the reason).
    """
    t0 = time.perf_counter()
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    inputs, unmatched = F.expand_inputs(items)
    if not inputs and not unmatched:
        raise F.InputError("no input files given")
    table = _prompt_table(prompts)
    opts = ModelOptions(model, None if checkpoint is None else str(checkpoint), backend,
                        device, precision, image_size)  # fmt: skip
    if series == F.ALL_SERIES and output is not None:
        raise F.InputError("--series all writes one output per series: use --out DIR, not -o")
    settings = Settings(
        auto=auto,
        propagate=propagate,
        planes=_planes_setting(planes),
        contrast_limits=tuple(contrast_limits) if contrast_limits is not None else None,
        channel=channel,
        series=0 if series == F.ALL_SERIES else int(series),
        overwrite=overwrite or output is not None,
        dicom_seg=dicom_seg,
        segments=_segments_setting(segments),
    )
    results: list = [FileResult(u, None, FAILED, "no file matches") for u in unmatched]
    todo_inputs = []
    for p in inputs:
        if skip_labels_files and F.is_labels_name(p) and output is None:
            results.append(
                FileResult(str(p), None, SKIPPED, "a labels file (name ends in _labels)")
            )
        else:
            todo_inputs.append(p)
    jobs: list[Job] = []
    slots: list[int] = []
    entries = F.series_entries(todo_inputs, series)
    ks = [k for _, k, _ in entries]
    plans = (
        F.plan_outputs([e[0] for e in entries], out_dir, output, dicom_seg, ks) if entries else []
    )
    stems = [F.stem(p) for p in todo_inputs]
    for (p, k, every), (out, problem) in zip(entries, plans, strict=True):
        if problem:
            results.append(FileResult(str(p), str(out), FAILED, problem))
            continue
        fp = table.for_file(p, stems) if isinstance(table, PromptTable) else table
        st = settings if k == settings.series else replace(settings, series=k)
        job = Job(str(p), str(out), fp, st, fingerprint(fp, st, opts), all_series=every)
        done = check_existing(job)
        if done is not None:
            results.append(done)
            continue
        results.append(None)
        slots.append(len(results) - 1)
        jobs.append(job)
    if isinstance(table, PromptTable):  # a typo in the CSV's file column shows up
        for name in table.unused(inputs):
            results.append(FileResult(name, None, SKIPPED, "in the prompts but not an input"))

    bars = _Bars(len(results)) if progress is True else None
    notify = bars or (progress if callable(progress) else None)
    counter = {"done": 0}

    def emit(res: FileResult, planes_done=None) -> None:
        counter["done"] += 1
        if notify:
            notify({"event": "file", "result": res, "done": counter["done"],
                    "total": len(results), "planes_done": planes_done})  # fmt: skip

    try:
        for r in results:
            if r is not None:
                emit(r, planes_done=0)
        cluster = client is not None or scheduler or workers
        if plane_chunks is not None and plane_chunks < 1:
            raise F.InputError("plane_chunks must be at least 1")
        n_chunks = plane_chunks if (plane_chunks is not None or cluster) else 1
        chunks = {
            i: c
            for i, job in enumerate(jobs)
            if (c := plan_chunks(job, n_chunks, fresh=overwrite))
        }

        def planes_done(inp: str, count: int = 1) -> None:
            if notify:
                notify({"event": "plane", "input": inp, "count": count})

        if jobs and cluster:
            from ._cluster import run_on_cluster

            new = run_on_cluster(jobs, opts, client=client, scheduler=scheduler,
                                 workers=workers, retries=retries, on_result=emit,
                                 on_start=on_task_start, chunks=chunks,
                                 on_planes=planes_done)  # fmt: skip
            where = _where(client, scheduler, workers)
        else:
            seg = segmenter if segmenter is not None else (opts.make() if jobs else None)
            new = []
            for i, job in enumerate(jobs):
                if on_task_start is not None:
                    on_task_start(job)
                step = partial(planes_done, job.input)
                if i in chunks:
                    res = run_chunked(job, chunks[i], seg, on_plane=step)
                else:
                    res = run_job(job, seg, on_plane=step)
                new.append(res)
                emit(res, planes_done=res.planes)
            where = "in-process"
    finally:
        if bars is not None:
            bars.close()
    for slot, res in zip(slots, new, strict=True):
        results[slot] = res
    return Summary(results, time.perf_counter() - t0, where)


def _planes_setting(planes):
    """``--plane`` text / item tuple (``"all,12"``, ``("all", 12)``) or plane tuples."""
    if planes is None or isinstance(planes, str):
        return parse_plane_spec(planes)
    planes = list(planes)
    if not planes:
        return None
    if all(isinstance(p, (tuple, list)) for p in planes):
        return tuple(tuple(int(i) for i in p) for p in planes)
    return parse_plane_spec(planes)


def _where(client, scheduler, workers) -> str:
    if client is not None:
        return f"dask client {getattr(client, 'scheduler', None) and client.scheduler.address}"
    if scheduler:
        return f"dask scheduler {scheduler}"
    return f"dask LocalCluster ({workers} worker processes)"


def _segments_setting(segments) -> dict | None:
    """``{"ID": {"label", "category", "type"}}`` (plain JSON for the workers and the
    fingerprint) from a mapping or a JSON/CSV file; SegmentSpecError when a code is unknown."""
    if segments is None:
        return None
    from collections.abc import Mapping

    from ..io.medical.segment_codes import parse_segments, read_segment_file

    specs = (
        parse_segments(segments)
        if isinstance(segments, Mapping)
        else read_segment_file(segments)
    )
    return {str(k): spec.as_dict() for k, spec in sorted(specs.items())} or None
