"""One encoder, many clients: a fair queue, batching, limits and the shared cache.

- **Fair queue.** Each client (its ``X-Client-Id``, else its token) has its own FIFO; the
  worker takes jobs round-robin across clients, so one client precomputing a 500-plane
  stack does not starve another one clicking.
- **Batching.** The worker takes up to ``batch_size`` jobs at once and encodes them in one
  call when the backend can (``encode_batch``: SAM 2 on a GPU).
- **One encode per plane.** Jobs are addressed by the image's SHA-256 and the model: a
  plane already cached (memory, then the disk cache folder) is answered without queueing,
  and a second request for a plane being encoded waits for that same encode.
- **Limits.** A full queue gives :class:`QueueFull` (HTTP 503) and a token over its rate
  :class:`RateLimited` (HTTP 429), at once, never a hang.
- **Cancel.** ``cancel(request_id)`` drops a queued job, or stops a running encode between
  encoder blocks, once no other request waits for it.

The scheduler holds no session state beyond its caches: replicas behind a load balancer
sharing a cache folder behave as one server (docs/server.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..engine.cache.memory import EmbeddingCache
from ..engine.errors import Cancelled, NapariSam2Error

log = logging.getLogger(__name__)


class QueueFull(NapariSam2Error):
    """The encode queue is at its limit (HTTP 503)."""


class RateLimited(NapariSam2Error):
    """This token sent more requests than its rate allows (HTTP 429)."""


@dataclass
class Limits:
    max_queue: int = 64  # jobs waiting, all clients together
    rate: float = 0.0  # encode requests per second per token (0: unlimited)
    burst: int = 32  # requests a token may send at once above its rate
    batch_size: int = 1  # planes per encoder call


@dataclass
class Counters:
    requests: int = 0
    encodes: int = 0
    memory_hits: int = 0
    disk_hits: int = 0
    joined: int = 0  # requests that waited for an encode already running for another one
    rejected_busy: int = 0
    rejected_rate: int = 0
    cancelled: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Job:
    key: tuple
    image: object
    future: Future = field(default_factory=Future)
    cancel: threading.Event = field(default_factory=threading.Event)
    waiters: set = field(default_factory=set)


class _Bucket:
    """Token bucket: ``rate`` per second, ``burst`` at most."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, float(burst)
        self.level, self.t = float(burst), time.monotonic()

    def take(self) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.t) * self.rate)
        self.t = now
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.rate


class EncodeScheduler:
    """Encodes SAM input images with ``backend`` for many clients (see the module doc)."""

    def __init__(self, backend, limits: Limits, *, memory_bytes: int, disk_cache=None,
                 store_dtype=None):  # fmt: skip
        self.backend = backend
        self.limits = limits
        self.memory = EmbeddingCache(memory_bytes, store_dtype)
        self.disk = disk_cache
        self.counters = Counters()
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._queued = 0
        self._inflight: dict[tuple, _Job] = {}
        self._by_request: dict[str, _Job] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._run, name="napari-sam2-encoder", daemon=True)

    def start(self) -> EncodeScheduler:
        self._worker.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join(timeout=10)

    @property
    def queued(self) -> int:
        return self._queued

    def key(self, digest: str) -> tuple:
        return (("sha256", digest), self.backend.cache_key())

    # ----------------------------------------------------------------- clients
    def check_rate(self, token: str) -> None:
        """Count one request of ``token``; :class:`RateLimited` when over its rate."""
        if self.limits.rate <= 0:
            return
        with self._cond:
            bucket = self._buckets.setdefault(token, _Bucket(self.limits.rate, self.limits.burst))
            wait = bucket.take()
        if wait:
            self.counters.rejected_rate += 1
            raise RateLimited(f"Too many requests for this token: retry in {wait:.1f} s.")

    def cached(self, digest: str):
        """The embedding of an image already encoded (memory, then disk), or None."""
        key = self.key(digest)
        emb = self.memory.get(key)
        if emb is not None:
            self.counters.memory_hits += 1
            return emb
        if self.disk is not None:
            emb = self.disk.get(key, self.backend)
            if emb is not None:
                self.counters.disk_hits += 1
                return self.memory.put(key, emb)
        return None

    def submit(self, digest: str, image, client: str, request_id: str) -> Future:
        """A future of the image's embedding (joined to a running encode of the same image)."""
        key = self.key(digest)
        with self._cond:
            self.counters.requests += 1
            job = self._inflight.get(key)
            if job is not None and not job.cancel.is_set():
                self.counters.joined += 1
            elif (emb := self.memory.get(key)) is not None:
                # encoded by another request between this one's lookup and its upload: an
                # encode stores the embedding before it leaves ``_inflight``, so this check
                # under the lock closes that window and the plane is never encoded twice
                self.counters.memory_hits += 1
                done: Future = Future()
                done.set_result(emb)
                return done
            else:
                if self._queued >= self.limits.max_queue:
                    self.counters.rejected_busy += 1
                    raise QueueFull(f"The encode queue is full ({self._queued} planes waiting).")
                job = _Job(key, image)
                self._inflight[key] = job
                self._queues.setdefault(client, deque()).append(job)
                self._queued += 1
                self._cond.notify()
            job.waiters.add(request_id)
            self._by_request[request_id] = job
        return job.future

    def done(self, request_id: str) -> None:
        """Forget a request once it was answered."""
        with self._cond:
            self._by_request.pop(request_id, None)

    def cancel(self, request_id: str) -> bool:
        """Drop ``request_id``'s interest; the job stops once nobody waits for it."""
        with self._cond:
            job = self._by_request.pop(request_id, None)
            if job is None:
                return False
            job.waiters.discard(request_id)
            if not job.waiters:
                job.cancel.set()
                self.counters.cancelled += 1
            return True

    # ------------------------------------------------------------------ worker
    def _take(self) -> list[_Job]:
        """Up to ``batch_size`` jobs, one client after the other (round-robin)."""
        jobs: list[_Job] = []
        while self._queues and len(jobs) < max(1, self.limits.batch_size):
            client, q = next(iter(self._queues.items()))
            jobs.append(q.popleft())
            self._queued -= 1
            del self._queues[client]
            if q:
                self._queues[client] = q  # to the back of the line
        return jobs

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queues and not self._stop:
                    self._cond.wait()
                if self._stop:
                    break
                jobs = self._take()
            live = []
            for job in jobs:
                if job.cancel.is_set():
                    self._finish(job, exc=Cancelled("Cancelled by the client."))
                else:
                    live.append(job)
            if live:
                self._encode(live)
        with self._cond:  # stopping: nobody waits forever
            for q in self._queues.values():
                for job in q:
                    self._finish(job, exc=Cancelled("The server is shutting down."))

    def _encode(self, jobs: list[_Job]) -> None:
        if len(jobs) > 1 and hasattr(self.backend, "encode_batch"):
            try:
                embs = self.backend.encode_batch([j.image for j in jobs])
            except BaseException as e:  # noqa: BLE001 - handed to every waiting request
                for job in jobs:
                    self._finish(job, exc=e)
                return
            for job, emb in zip(jobs, embs, strict=True):
                self._store(job, emb)
            return
        for job in jobs:
            try:
                emb = self.backend.encode(job.image, cancel=job.cancel)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting requests
                self._finish(job, exc=e)
                continue
            self._store(job, emb)

    def _store(self, job: _Job, emb) -> None:
        self.counters.encodes += 1
        emb = self.memory.put(job.key, emb)
        if self.disk is not None:
            try:
                self.disk.put(job.key, emb, self.backend)
            except OSError as e:  # a full or read-only cache folder: still answer
                log.warning("disk cache write failed: %s", e)
        self._finish(job, result=emb)

    def _finish(self, job: _Job, *, result=None, exc=None) -> None:
        with self._cond:
            if self._inflight.get(job.key) is job:
                del self._inflight[job.key]
        job.image = None
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
