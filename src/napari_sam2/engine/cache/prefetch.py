"""Encode the planes a user is likely to visit next, at low priority, in the background.

A :class:`Prefetcher` runs one daemon thread at a time that calls
``segmenter.embedding(plane)`` for the given planes (cached ones are skipped), so that a
later click there costs only a decode.  :meth:`Prefetcher.cancel` stops it between two
image-encoder blocks (SAM 2) or between planes; the caller cancels it on every user action,
so the user's own encode waits at most one encoder block for the backend's lock.
"""

from __future__ import annotations

import logging
import threading

from ..cancel import check_cancel
from ..errors import Cancelled

log = logging.getLogger(__name__)


def neighbours(plane, index_shape, axis: int = -1, direction: int = 1, radius: int = 1):
    """The viewed ``plane`` (first), then its neighbours along ``axis`` within ``radius``,
    the side the user moves to (``direction`` +1/-1) first; clipped to ``index_shape``."""
    plane = tuple(int(v) for v in plane)
    if not plane:
        return [()]
    axis = axis % len(plane)
    step = 1 if direction >= 0 else -1
    out = [plane]
    for d in range(1, radius + 1):
        for s in (step, -step):
            v = plane[axis] + s * d
            if 0 <= v < index_shape[axis]:
                out.append(plane[:axis] + (v,) + plane[axis + 1 :])
    return out


class Prefetcher:
    """Background encodes for one :class:`~napari_sam2.engine.segmenter.Segmenter`."""

    def __init__(self, segmenter):
        self.segmenter = segmenter
        self.encoded = 0  # planes this prefetcher encoded
        self.cancelled = 0  # runs stopped by cancel()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._queue: list = []
        self.current = None  # the plane being encoded now

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, planes) -> None:
        """Encode ``planes`` in order in the background.  A run that is encoding one of
        them now goes on with the new list (its work is not thrown away); any other run
        is cancelled first."""
        planes = list(planes)
        with self._lock:
            if self.busy and not self._cancel.is_set() and self.current in planes:
                self._queue[:] = [p for p in planes if p != self.current]
                return
        self.cancel()
        ev = self._cancel = threading.Event()
        with self._lock:
            self._queue = queue = planes  # this run's own list
            self.current = None
        self._thread = threading.Thread(
            target=self._run, args=(ev, queue), name="napari-sam2-prefetch", daemon=True
        )
        self._thread.start()

    def cancel(self, wait: bool = False) -> None:
        """Stop the running prefetch; ``wait``: until its thread has let the model go."""
        self._cancel.set()
        if wait and self._thread is not None:
            self._thread.join()

    def join(self, timeout=None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _next(self, queue):
        with self._lock:
            plane = queue.pop(0) if queue else None
            if queue is self._queue:
                self.current = plane
            return plane

    def _run(self, ev: threading.Event, queue: list) -> None:
        seg = self.segmenter
        try:
            while (plane := self._next(queue)) is not None:
                check_cancel(ev, "Prefetch cancelled.")
                if seg.source is None or seg.is_encoded(plane):
                    continue
                seg.embedding(plane, cancel=ev)
                self.encoded += 1
        except Cancelled:
            self.cancelled += 1
        except Exception:  # noqa: BLE001 - a prefetch is best effort; the click will tell
            log.debug("prefetch stopped", exc_info=True)
        finally:
            with self._lock:
                if queue is self._queue:
                    self.current = None
