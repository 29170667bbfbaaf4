"""Warm-up after a model load, prefetch of nearby planes, the disk-cache toggle."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends import ClassicalBackend
from napari_sam2.engine.cache.prefetch import Prefetcher, neighbours
from napari_sam2.engine.errors import Cancelled
from widget_helpers import TIMEOUT, click, ready_widget
from widget_helpers import discs as _discs
from widget_helpers import segment_and_wait as _segment


class SlowBackend(ClassicalBackend):
    """Classical, but each encode takes ``delay`` s and honours ``cancel`` meanwhile.

    ``entered`` is set when an encode starts; while ``gate`` is clear an encode does not
    end (unless cancelled), so a test can hold it "in progress" as long as it needs.
    """

    def __init__(self, delay=0.3):
        super().__init__()
        self.delay = delay
        self.calls = 0
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def encode(self, image, cancel=None):
        with self.lock:  # like Sam2Backend._lock: one encode at a time
            self.calls += 1
            self.entered.set()
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < self.delay or not self.gate.is_set():
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Encoding cancelled.")
                time.sleep(0.005)
            return super().encode(image)


def _stack(n=4):
    return np.stack([_discs(shape=(64, 64), centers=((32, 32),), r=10 + z) for z in range(n)])


def test_neighbours_order_and_clipping():
    assert neighbours((2,), (5,), direction=1) == [(2,), (3,), (1,)]
    assert neighbours((2,), (5,), direction=-1, radius=2) == [(2,), (1,), (3,), (0,), (4,)]
    assert neighbours((0,), (5,), direction=-1) == [(0,), (1,)]
    assert neighbours((1, 4), (3, 5), axis=1) == [(1, 4), (1, 3)]


def test_prefetcher_encodes_skips_cached_and_cancels():
    be = SlowBackend(0.2)
    seg = Segmenter(predictor=be).set_image(_stack())
    seg.embedding((1,))  # already cached: skipped
    pf = Prefetcher(seg)
    pf.start([(1,), (2,), (0,)])
    pf.join(10)
    assert seg.is_encoded((2,)) and seg.is_encoded((0,)) and not seg.is_encoded((3,))
    assert pf.encoded == 2 and seg.stats.encodes == 3
    be.gate.clear()  # the next encode stays in progress until cancelled
    be.entered.clear()
    pf.start([(3,)])
    assert be.entered.wait(10)  # the prefetch thread is inside the encode of plane 3
    pf.cancel(wait=True)  # stops inside the encode
    assert be.calls == 4  # that encode had started: it was stopped, not skipped
    assert not seg.is_encoded((3,)) and pf.cancelled == 1 and seg.stats.encodes == 3


def test_prefetcher_keeps_an_encode_that_is_still_wanted():
    be = SlowBackend(0.0)
    seg = Segmenter(predictor=be).set_image(_stack())
    pf = Prefetcher(seg)
    be.gate.clear()  # plane 2's encode stays in progress until the gate opens
    pf.start([(2,), (3,)])
    assert be.entered.wait(10)
    assert pf.current == (2,)
    pf.start([(2,), (1,)])  # the user moved: plane 2 is still wanted, 3 no longer
    be.gate.set()
    pf.join(10)
    assert [seg.is_encoded((z,)) for z in range(4)] == [False, True, True, False]
    assert be.calls == 2 and pf.cancelled == 0


@pytest.mark.parametrize("which", ["classical", "sam2"])
def test_warm_up_touches_no_cache_or_counter(which, request):
    seg = request.getfixturevalue(
        f"{which}_segmenter" if which == "classical" else "sam2_random_segmenter"
    )
    before = (seg.stats.as_dict(), len(seg.cache), seg.cache.nbytes)
    assert seg.warm_up() > 0
    assert (seg.stats.as_dict(), len(seg.cache), seg.cache.nbytes) == before
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        seg.warm_up(cancel=ev)


def test_widget_warms_up_once_per_model_load(make_napari_viewer, qtbot, monkeypatch):
    calls = []
    real = Segmenter.warm_up

    def counted(self, *, cancel=None):
        calls.append(self)
        return real(self, cancel=cancel)

    monkeypatch.setattr(Segmenter, "warm_up", counted)
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, _discs())
    assert calls == []  # a segmenter handed in was not loaded by the widget
    bg = next(p for p in w.panels if type(p).__name__ == "PerformancePanel").background
    mp = w.model_panel
    mp.backend_combo.setCurrentText("classical")
    for n in (1, 2):
        mp.load()
        qtbot.waitUntil(lambda n=n: len(calls) == n and not bg.warming, timeout=TIMEOUT)
        seg = w.session.segmenter
        assert calls[-1] is seg and seg.stats.encodes == 0 and len(seg.cache) == 0
    assert "warmed up" in w.status.text()
    click(w.session.points_layer, (40, 40))  # the first click works normally afterwards
    _segment(qtbot, w)
    assert w.session.segmenter.stats.encodes == 1


def test_click_during_warm_up_cancels_it(make_napari_viewer, qtbot):
    be = SlowBackend(5.0)
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, _discs(), segmenter=Segmenter(predictor=be))
    panel = next(p for p in w.panels if type(p).__name__ == "PerformancePanel")
    panel._model_loaded(w.session.segmenter)  # as after a load
    qtbot.waitUntil(lambda: be.calls == 1, timeout=TIMEOUT)
    click(w.session.points_layer, (40, 40))  # a user action: the warm-up stops
    _segment(qtbot, w)
    qtbot.waitUntil(lambda: not panel.background.warming, timeout=TIMEOUT)
    [err] = panel.background.warm_errors
    assert isinstance(err, Cancelled)  # it did not run its 5 s to the end
    assert be.calls == 2 and w.session.segmenter.stats.encodes == 1
    assert w.session.result is not None


def test_prefetch_in_widget_encodes_neighbours_and_gives_way(make_napari_viewer, qtbot):
    be = SlowBackend(0.3)
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, _stack(5), segmenter=Segmenter(predictor=be))
    panel = next(p for p in w.panels if type(p).__name__ == "PerformancePanel")
    assert not panel.prefetch_check.isChecked()  # CPU: off by default (measured)
    panel.prefetch_check.setChecked(True)
    seg = w.session.segmenter
    viewer.dims.set_current_step(0, 2)
    click(w.session.points_layer, (2, 40, 40))
    _segment(qtbot, w)  # encodes plane 2; then the idle dock prefetches 3 and 1
    qtbot.waitUntil(lambda: seg.is_encoded((3,)) and seg.is_encoded((1,)), timeout=TIMEOUT)
    viewer.dims.set_current_step(0, 3)  # moving up: 4 next
    qtbot.waitUntil(lambda: seg.is_encoded((4,)), timeout=TIMEOUT)
    assert seg.stats.encodes == 4 and not seg.is_encoded((0,))
    # a user action cancels a running prefetch at once
    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(lambda: panel.background.prefetcher.current == (0,), timeout=TIMEOUT)
    w.user_action.emit()
    panel.background.prefetcher.join(5)
    assert not seg.is_encoded((0,)) and panel.background.prefetcher.cancelled >= 1
    panel.prefetch_check.setChecked(False)


def test_disk_cache_toggle_turns_caching_on_for_the_session(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, _discs())
    panel = next(p for p in w.panels if type(p).__name__ == "PerformancePanel")
    seg = w.session.segmenter
    assert seg.disk_cache is None and not panel.disk_check.isChecked()
    panel.folder_edit.setText(str(tmp_path / "emb"))
    panel.disk_check.setChecked(True)
    assert seg.disk_cache is not None and seg.disk_cache.folder == tmp_path / "emb"
    click(w.session.points_layer, (40, 40))
    _segment(qtbot, w)
    assert len(list((tmp_path / "emb").rglob("*.npz"))) == 1  # the encode went to disk
    panel.disk_check.setChecked(False)
    assert seg.disk_cache is None


def test_no_prefetch_of_planes_larger_than_the_model_input(make_napari_viewer, qtbot):
    # planes that are tiled on demand are never prefetched whole (a slide would be read
    # and squeezed into one input); small planes of the same stack are
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, _stack(5), segmenter=Segmenter(predictor=SlowBackend(0.0)))
    panel = next(p for p in w.panels if type(p).__name__ == "PerformancePanel")
    viewer.dims.set_current_step(0, 2)
    click(w.session.points_layer, (2, 40, 40))
    _segment(qtbot, w)
    assert panel.background._targets()  # the neighbours
    w.session.tile_size = 16  # now every plane is "larger than the model input"
    assert panel.background._targets() == []
