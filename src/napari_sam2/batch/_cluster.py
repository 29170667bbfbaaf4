"""Files on a dask.distributed cluster: a worker plugin holds one Segmenter per worker,
each file is one task (retried when its worker is lost or fails unexpectedly), the
workers write the outputs, the client follows the progress.

Imported only when a cluster is used: the in-process batch never imports distributed.
"""

from __future__ import annotations

import secrets
import threading

from distributed import Client, LocalCluster, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from . import _ranges as R
from ._chunks import Chunk, ChunkResult, assemble, run_chunk
from ._results import FAILED, FileResult
from ._work import Job, ModelOptions, run_job

PLUGIN_PREFIX = "napari-sam2-batch"
TOPIC = "napari-sam2-batch"


class SegmenterPlugin(WorkerPlugin):
    """Loads the model once per worker (on the worker's first file) and keeps it."""

    def __init__(self, options: ModelOptions):
        self.options = options
        self.name = f"{PLUGIN_PREFIX}-{options.key()}"

    def setup(self, worker):
        self.lock = threading.Lock()  # a Segmenter is not thread-safe
        self._segmenter = None
        self._error = None
        self._worker = worker

    def teardown(self, worker):
        self._segmenter = None

    def segmenter(self):
        """The worker's Segmenter; raises the load error again for every file."""
        if self._segmenter is None and self._error is None:
            try:
                self._segmenter = self.options.make()
                self._worker.log_event(
                    TOPIC, {"loaded": self.name, "worker": self._worker.address}
                )
            except (ValueError, OSError, ImportError) as e:
                self._error = e
            except Exception as e:  # noqa: BLE001 - NapariSam2Error and friends
                from ..engine.errors import NapariSam2Error

                if not isinstance(e, NapariSam2Error):
                    raise
                self._error = e
        if self._error is not None:
            raise self._error
        return self._segmenter


def cluster_task(job: Job, plugin_name: str, run_id: str, on_start=None) -> FileResult:
    """The task of one file, run on a worker."""
    worker = get_worker()
    worker.log_event(TOPIC, {"run": run_id, "input": job.input, "output": job.output,
                             "worker": worker.address})  # fmt: skip
    if on_start is not None:
        on_start(job)
    plugin = worker.plugins[plugin_name]
    with plugin.lock:
        try:
            seg = plugin.segmenter()
        except Exception as e:  # noqa: BLE001 - the model cannot load on this worker
            return FileResult(job.input, job.output, FAILED, f"model: {e}", worker=worker.address)
        res = run_job(job, seg, reraise_unexpected=True)
    res.worker = worker.address
    return res


def chunk_task(chunk: Chunk, plugin_name: str, run_id: str, on_start=None) -> ChunkResult:
    """The task of some planes of one file, run on a worker."""
    worker = get_worker()
    worker.log_event(TOPIC, {"run": run_id, "input": chunk.job.input, "chunk": chunk.index,
                             "output": chunk.job.output, "worker": worker.address})  # fmt: skip
    if on_start is not None:
        on_start(chunk.job)
    if chunk.reuse is not None and R.still_there(chunk):  # done by an earlier run: no model
        res = run_chunk(chunk, None, reraise_unexpected=True)  # deleted since: retried
        res.worker = worker.address
        return res
    plugin = worker.plugins[plugin_name]
    res = ChunkResult(chunk.index, chunk.path, chunk.planes, worker=worker.address)
    with plugin.lock:
        try:
            seg = plugin.segmenter()
        except Exception as e:  # noqa: BLE001 - the model cannot load on this worker
            res.error = f"model: {e}"
            return res
        res = run_chunk(chunk, seg, reraise_unexpected=True)
    res.worker = worker.address
    return res


def assemble_task(job: Job, results: list) -> FileResult:
    """Runs on a worker once all chunks of ``job`` are done: the one output."""
    res = assemble(job, results)
    res.worker = res.worker or get_worker().address
    return res


def open_client(scheduler: str | None = None, workers: int | None = None):
    """(client, things to close): an existing scheduler, or a LocalCluster of processes."""
    if scheduler:
        client = Client(scheduler)
        return client, [client]
    cluster = LocalCluster(
        n_workers=max(int(workers or 1), 1),
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
    )
    client = Client(cluster)
    return client, [client, cluster]


def run_on_cluster(
    jobs: list[Job],
    options: ModelOptions,
    *,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    on_result=None,
    on_start=None,
    chunks: dict | None = None,
    on_planes=None,
) -> list[FileResult]:
    """Run ``jobs`` on a cluster; results in the order of ``jobs``.

    A task whose worker dies is rescheduled by the scheduler (up to
    ``distributed.scheduler.allowed-failures`` times); an unexpected error in a task is
    retried ``retries`` times.  ``attempts`` of each result counts the starts.
    """
    to_close = []
    if client is None:
        client, to_close = open_client(scheduler, workers)
    try:
        plugin = SegmenterPlugin(options)
        client.register_plugin(plugin, name=plugin.name)
        run_id = secrets.token_hex(4)
        chunks = chunks or {}
        futures, parts, chunk_lists = [], {}, []
        for i, job in enumerate(jobs):
            key = f"napari-sam2-{run_id}-{i}"
            if i in chunks:
                part = [
                    client.submit(chunk_task, c, plugin.name, run_id, on_start,
                                  key=f"{key}-c{c.index}", retries=retries, pure=False)
                    for c in chunks[i]
                ]  # fmt: skip
                chunk_lists.append(part)
                parts.update(
                    {f.key: (i, len(c.planes)) for f, c in zip(part, chunks[i], strict=True)}
                )
                fut = client.submit(assemble_task, job, part, key=key, retries=retries,
                                    pure=False)  # fmt: skip
            else:
                fut = client.submit(cluster_task, job, plugin.name, run_id, on_start, key=key,
                                    retries=retries, pure=False)  # fmt: skip
            futures.append(fut)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(jobs)
        chunk_futures = [f for part in chunk_lists for f in part]
        for fut in as_completed(futures + chunk_futures):
            if fut.key in parts:  # some planes of a file: progress only
                i, count = parts[fut.key]
                if on_planes is not None and fut.status == "finished":
                    on_planes(jobs[i].input, count)
                continue
            i = index[fut.key]
            job = jobs[i]
            if fut.status == "finished":
                res = fut.result()
            else:
                exc = fut.exception()
                res = FileResult(job.input, job.output, FAILED, f"{type(exc).__name__}: {exc}")
            results[i] = res
            if on_result is not None:
                on_result(res, res.planes if i in chunks else None)
        starts = _starts(client, run_id)
        for res in results:
            res.attempts = max(starts.get(res.output, 1), 1)
        return results
    finally:
        for thing in to_close:
            thing.close()


def _starts(client, run_id: str) -> dict:
    counts: dict = {}
    try:
        events = client.get_events(TOPIC)
    except Exception:  # noqa: BLE001 - events are a report, never a failure
        return counts
    for _, msg in events:
        if isinstance(msg, dict) and msg.get("run") == run_id:
            key = (msg.get("output", msg["input"]), msg.get("chunk"))  # one per job
            counts[key] = counts.get(key, 0) + 1
    out: dict = {}
    for (job, _), n in counts.items():  # a split file: its most-tried plane range
        out[job] = max(out.get(job, 0), n)
    return out
