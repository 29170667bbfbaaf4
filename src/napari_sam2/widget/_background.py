"""Background work for the dock: model warm-up after a load, prefetch of nearby planes.

Both give way to the user: any user action (a prompt added, Segment, Commit) cancels
them (:attr:`SAM2Widget.user_action`); a SAM 2 encode stops between two encoder blocks,
so the user's own request waits at most one block for the model.
"""

from __future__ import annotations

import threading

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer

from ..adapter.channels import image_source
from ..adapter.orientation import oriented_source
from ..adapter.tiles import wants_tiles
from ..engine.cache.prefetch import Prefetcher, neighbours
from ..engine.errors import NapariSam2Error
from ._calibration import BackgroundCalibration

IDLE_MS = 300  # the user has stopped moving / the worker is idle this long: prefetch


def prefetch_default(segmenter) -> bool:
    """Prefetch on by default? Only where measured not to hurt the click latency.

    Measured (benchmarks/bench_prefetch.py, docs/performance.md): on a 2-core CPU a click
    during a prefetch encode waits for the encoder block in progress and the two share the
    cores, so it is off on CPU.  On CUDA an encode takes tens of ms: on.
    """
    if segmenter is None:
        return False
    return str(segmenter.describe().get("device", "cpu")).startswith("cuda")


class Background(QObject):
    """Warm-up and prefetch for one dock (``dock.session``, ``dock.viewer``)."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.prefetch_on = False
        self.warmups = 0  # warm-ups started (one per model load)
        self.warm_errors: list = []  # what stopped them (Cancelled by a click, mostly)
        self._warm_cancel = threading.Event()
        self._warm_worker = None
        self._prefetcher: Prefetcher | None = None
        self._last_plane = None
        self._axis, self._direction = -1, 1
        self._timer = QTimer(self, singleShot=True, interval=IDLE_MS)
        self._timer.timeout.connect(self._idle)
        self.calibration = BackgroundCalibration(dock)  # bf16 vs fp32, after the warm-up

    # ------------------------------------------------------------- warm-up
    def warm_up(self, seg) -> None:
        """Pay ``seg``'s one-off costs in a worker (cancelled by a user action)."""
        self._warm_cancel.set()
        ev = self._warm_cancel = threading.Event()
        self.warmups += 1
        self._warm_worker = create_worker(
            seg.warm_up,
            cancel=ev,
            _connect={
                "returned": self._warmed,
                "errored": self._warm_failed,
                "finished": self._warm_done,
            },
            _start_thread=False,
        )
        self._warm_worker.start()

    def _warm_failed(self, exc) -> None:
        """Cancelled by the user's first click, or failed: the click will tell."""
        self.warm_errors.append(exc)
        self.calibration.want()

    def _warmed(self, seconds) -> None:
        if not self.dock.closed:
            self.dock.set_status(f"{self.dock.describe()} · warmed up in {seconds:.1f} s")
            self.calibration.start_if_needed()

    def _warm_done(self) -> None:
        self._warm_worker = None

    @property
    def warming(self) -> bool:
        return self._warm_worker is not None

    # ------------------------------------------------------------ prefetch
    def set_prefetch(self, on: bool) -> None:
        self.prefetch_on = bool(on)
        if on:
            self._timer.start()
        else:
            self.cancel_prefetch()

    @property
    def prefetcher(self) -> Prefetcher | None:
        seg = self.dock.session.segmenter
        if seg is None:
            return None
        if self._prefetcher is None or self._prefetcher.segmenter is not seg:
            self.cancel_prefetch()
            self._prefetcher = Prefetcher(seg)
        return self._prefetcher

    def cancel_prefetch(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.cancel()

    def slice_changed(self, event=None) -> None:
        if self.prefetch_on:
            self._timer.start()  # (re)start: prefetch once the user pauses

    def user_action(self) -> None:
        """A click, Segment or Commit: background work gives way at once."""
        self._warm_cancel.set()
        self.cancel_prefetch()
        self.calibration.user_action()
        if self.prefetch_on:
            self._timer.start()  # and resumes when the dock is idle again

    def _idle(self) -> None:
        dock = self.dock
        if not self.prefetch_on or dock.closed:
            return
        if dock.busy or dock.committer.running or self.warming:
            self._timer.start()  # the user's work first
            return
        planes = self._targets()
        pf = self.prefetcher
        if planes and pf is not None:
            pf.start(planes)

    def _targets(self) -> list:
        """The viewed plane and its neighbours along the axis the user moves on, when the
        segmenter holds this very image (same pixels and normalisation)."""
        s = self.dock.session
        seg = s.segmenter
        if seg is None or seg.source is None or s.image_layer is None:
            return []
        try:
            index = s.viewed_index()
            plane = s.viewed_plane()
            orient = s.orientation()
            src = oriented_source(image_source(s.viewer, s.image_layer, s.channel, index), orient)
        except NapariSam2Error:
            return []
        if not s.holds_image(src) or not plane:
            return []
        if wants_tiles(s, s.image_layer, s.level, orient):  # large planes: tiles on demand only
            return []
        last, self._last_plane = self._last_plane, plane
        if last is not None and len(last) == len(plane) and last != plane:
            self._axis = next(
                i for i, (a, b) in enumerate(zip(last, plane, strict=True)) if a != b
            )
            self._direction = 1 if plane[self._axis] > last[self._axis] else -1
        return neighbours(plane, seg.source.index_shape, self._axis, self._direction)

    def close(self) -> None:
        self._timer.stop()
        self._warm_cancel.set()
        self.calibration.close()
        self.cancel_prefetch()
