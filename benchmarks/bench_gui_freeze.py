"""How long does the GUI freeze? Longest main-thread stall of the widget workflow.

Opens a 16-bit ImageJ Z-stack with a physical scale (64 x 2048 x 2048, 512 MiB, written
once to the temp folder) with the plugin's reader, lazily and eagerly, then drives the dock
widget by keyboard: New points/boxes/labels, click, S, C, N for several objects (one box),
Z scrub during an encode, Ctrl-Z on the labels, commit again.  A 5 ms QTimer on the main
thread records tick gaps (gap - interval = stall); the driver waits in nested event loops,
never blocking.  A sampler thread records the main thread's stack during each stall, and
some functions are timed by wrapping them.  Baselines (same run): idle loop and a slice
change with no widget.  Prints numbers and a verdict vs a 250 ms target; no assertions.

    xvfb-run -a .venv/bin/python benchmarks/bench_gui_freeze.py [--small]
        [--backend classical|sam2|both] [--data lazy|eager|both]
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import tifffile
from qtpy.QtCore import QEventLoop, Qt, QTimer
from qtpy.QtTest import QTest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402

TICK_MS = 5
REPORT_MS = 100
TOP = 12  # stalls listed per run
TARGET_MS = 250
SCALE = (2.0, 0.325, 0.325)
TRANSLATE = (10.0, -50.0, 120.0)
BASELINE = "slice change, no widget (baseline)"
HERE = Path(__file__).resolve()


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return Path(filename).name


def _culprit(frame) -> tuple[str, str]:
    """(innermost napari_sam2 frame, leaf frames) below the bench driver's own frames."""
    stack = traceback.extract_stack(frame)
    mine = [i for i, f in enumerate(stack) if f.filename == str(HERE) and f.name != "timed"]
    below = stack[mine[-1] + 1 :] if mine else stack
    if not below:
        return "(Qt/C++: event processing or painting outside Python)", ""
    fmt = [f"{_short(f.filename)}:{f.lineno} {f.name}" for f in below]
    own = [i for i, f in enumerate(below) if "napari_sam2" in f.filename]
    head = fmt[own[-1]] if own else fmt[0]
    return head, "".join(f" -> {t}" for t in fmt[-2:] if t != head)


def _cause(samples: list[tuple[str, str]]) -> str:
    """The one or two heads most sampled during a stall, with their commonest leaf."""
    parts = []
    for head, n in Counter(h for h, _ in samples).most_common(2):
        if parts and n < 3:
            break
        tail = Counter(t for h, t in samples if h == head).most_common(1)[0][0]
        parts.append(f"{100 * n // len(samples)}% {head}{tail}")
    return "; ".join(parts) or "(no sample)"


# Functions timed from the outside (main-thread calls only); missing ones are skipped.
WRAPPED = {
    "napari_sam2.widget._layer_actions": "new_points_layer new_shapes_layer new_labels_layer",
    "napari_sam2.widget._dock": "SAM2Widget.next_object",
    "napari_sam2.adapter.session": "SegmentationSession.prepare SegmentationSession.next_id",
    "napari_sam2.adapter.commit": "plan_edits write_edits",
    "napari_sam2.adapter.preview": "PreviewLayer.show PreviewLayer.clear",
    "napari_sam2.widget._commit": "begin_commit commit_preview ChunkedWriter.step "
    "ChunkedWriter.finish",
    "napari.layers": "Labels.data_setitem Labels.undo",
    "napari.utils.colormaps.colormap": "_cast_labels_data_to_texture_dtype_auto",
}
CALLS: dict[str, list[float]] = defaultdict(list)


def instrument() -> None:
    main = threading.get_ident()
    for mod, path in ((m, p) for m, names in WRAPPED.items() for p in names.split()):
        owner = importlib.import_module(mod)
        *parents, name = path.split(".")
        for p in parents:
            owner = getattr(owner, p)
        fn = getattr(owner, name, None)
        if fn is None:
            continue

        @functools.wraps(fn)
        def timed(*a, _fn=fn, _key=path, **k):
            if threading.get_ident() != main:
                return _fn(*a, **k)
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                CALLS[_key].append((time.perf_counter() - t0) * 1e3)

        setattr(owner, name, timed)


class StallMonitor:
    """Main-thread heartbeat + a sampler thread that records stacks during stalls."""

    def __init__(self):
        self.phase = "startup"
        self.order: list[str] = []
        self.max_ms: dict[str, float] = defaultdict(float)
        self.n_over: Counter = Counter()
        self.stalls: list[tuple[str, float, str]] = []
        self._samples: dict[float, list[tuple[str, str]]] = {}
        self._main = threading.get_ident()
        self._last = time.perf_counter()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self.timer = QTimer(interval=TICK_MS, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)

    def set_phase(self, name: str) -> None:
        self._tick()  # close the previous phase's gap before switching
        self.phase = name
        if name not in self.order:
            self.order.append(name)

    def start(self):
        self._last = time.perf_counter()
        self.timer.start()
        self._sampler.start()

    def stop(self):
        self.timer.stop()
        self._stop.set()
        self._sampler.join()

    def _tick(self):
        now = time.perf_counter()
        start, self._last = self._last, now
        stall = max(0.0, (now - start) * 1e3 - TICK_MS)
        samples = self._samples.pop(start, [])
        self.max_ms[self.phase] = max(self.max_ms[self.phase], stall)
        if stall > REPORT_MS:
            self.n_over[self.phase] += 1
            self.stalls.append((self.phase, stall, _cause(samples)))

    def _sample(self):
        while not self._stop.wait(0.01):
            start = self._last
            if time.perf_counter() - start > 0.04:
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    self._samples.setdefault(start, []).append(_culprit(frame))


def pump(ms: int = 10) -> None:
    """Let the event loop run for ``ms`` without blocking it."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_until(cond) -> None:
    while not cond():
        pump(10)


def press(viewer, key: str, ctrl: bool = False) -> None:
    """A key press on the canvas, dispatched by napari's keymap like a real one."""
    mod = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, getattr(Qt.Key, f"Key_{key}"), mod)


def disc_centers(hw: int) -> list[tuple[int, int]]:
    f = hw / 2048
    return [(int(r * f), int(c * f)) for r in (400, 1000, 1600) for c in (500, 1100, 1700)]


def make_tiff(shape: tuple[int, int, int]) -> Path:
    """An ImageJ Z-stack with spacing and pixel size (cached between runs)."""
    z, h, w = shape
    path = Path(tempfile.gettempdir()) / f"napari_sam2_freeze_{z}x{h}x{w}.tif"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    noise = rng.normal(400, 60, (h, w)).astype(np.float32)
    yy, xx = np.ogrid[:h, :w]
    discs = np.zeros((h, w), np.float32)
    for k, (r, c) in enumerate(disc_centers(h)):
        rad = (40 + 6 * k) * h / 2048
        discs[(yy - r) ** 2 + (xx - c) ** 2 <= rad**2] = 2500 + 150 * k

    planes = ((noise + discs * (1 - 0.6 * abs(i - z / 2) / z)).astype("u2") for i in range(z))

    tmp, meta = path.with_suffix(".part"), {"axes": "ZYX", "spacing": SCALE[0], "unit": "um"}
    res = (1 / SCALE[1], 1 / SCALE[2])
    tifffile.imwrite(
        tmp, planes, shape=shape, dtype="u2", imagej=True, resolution=res, metadata=meta
    )
    tmp.rename(path)
    return path


def scenario(path: Path, backend: str, lazy: bool, nz: int, commit: str = "new") -> StallMonitor:
    import napari

    from napari_sam2.engine.segmenter import Segmenter
    from napari_sam2.io.tiff.reader import read_tiff
    from napari_sam2.widget import SAM2Widget

    kw = {"random_weights": True, "device": "cpu"} if backend == "sam2" else {}
    seg = Segmenter("tiny", backend=backend, **kw)  # sam2: real architecture, random weights
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 900)
    pump(500)
    mon = StallMonitor()
    mon.start()

    def step(phase, action=None, until=None, settle_ms=300):
        mon.set_phase(phase)
        if action is not None:
            action()
        wait_until(until or (lambda: True))
        pump(settle_ms)

    def open_file():
        [(data, kw, _)] = read_tiff(path, lazy=lazy)
        viewer.add_image(data, translate=TRANSLATE, **kw)

    step("open file (reader + add_image)", open_file, settle_ms=1000)
    image = viewer.layers[0]
    assert tuple(image.scale) == SCALE, image.scale
    step("idle with image (baseline)", settle_ms=1000)
    mon.set_phase(BASELINE)
    for z in (nz // 8, nz // 4, nz // 2 - 4):
        step(BASELINE, lambda z=z: viewer.dims.set_current_step(0, z), settle_ms=250)

    w = SAM2Widget(viewer, segmenter=seg, autoload=False)
    if commit == "old":  # before: every commit planned and written at once on the GUI thread
        w.committer.sync_px = float("inf")
    step("open widget", lambda: viewer.window.add_dock_widget(w))
    step("New points", w.new_points_btn.click)
    step("New boxes", w.new_shapes_btn.click)
    step("New labels", w.new_labels_btn.click)
    points, shapes, labels = w.session.points_layer, w.session.shapes_layer, w.session.labels_layer
    viewer.layers.selection.active = points

    def go(z):
        step("change slice (widget open)", lambda: viewer.dims.set_current_step(0, z))

    def segment():
        w.session.result = None
        while w.session.result is None:  # again if dropped (slice changed meanwhile)
            step("segment [S] + wait", lambda: press(viewer, "S"), until=lambda: not w.busy)

    def obj(z, r, c, box=False, scrub=False):
        if box:
            d = 80 * image.data.shape[-1] // 2048
            rect = [[z, r - d, c - d], [z, r - d, c + d], [z, r + d, c + d], [z, r + d, c - d]]
            step("add prompt", lambda: shapes.add_rectangles(np.array(rect, float)))
        else:
            step("add prompt", lambda: points.add(np.array([[z, r, c]], float)))
        if scrub:  # the user scrubs Z while the encode runs, then comes back
            mon.set_phase("change slice during encode")
            press(viewer, "S")
            for zz in (z + 1, z + 2, z):
                step(mon.phase, lambda zz=zz: viewer.dims.set_current_step(0, zz))
            wait_until(lambda: not w.busy)
            if w.session.result is None:
                segment()
        else:
            segment()
        step("commit [C]", lambda: press(viewer, "C"), until=lambda: not w.committer.running)
        step("next object [N]", lambda: press(viewer, "N"))

    zc, z2 = nz // 2, nz // 2 + max(1, nz // 8)
    cen = disc_centers(image.data.shape[-1])
    go(zc)
    obj(zc, *cen[0])
    obj(zc, *cen[1])
    obj(zc, *cen[4], box=True)
    go(z2)
    obj(z2, *cen[2], scrub=True)
    obj(z2, *cen[6])

    def undo():
        viewer.layers.selection.active = labels
        press(viewer, "Z", ctrl=True)
        viewer.layers.selection.active = points

    n_before = int(np.count_nonzero(labels.data[z2]))
    step("undo [Ctrl-Z] on labels", undo)
    assert np.count_nonzero(labels.data[z2]) < n_before, "undo did not reach the labels"
    step("add prompt", lambda: points.add(np.array([[z2, *cen[7]]], float)))
    segment()
    step(
        "commit after undo [C]",
        lambda: press(viewer, "C"),
        until=lambda: not w.committer.running,
    )
    mon.set_phase("idle at end")
    pump(1000)
    mon.stop()
    planes = labels.data[[zc, z2]]
    mon.summary = (
        f"{len(np.unique(planes[0])) + len(np.unique(planes[1])) - 2} objects written "
        f"({np.count_nonzero(planes) / 1e6:.2f} Mpx), {seg.stats.encodes} encode(s), "
        f"last encode {seg.stats.last_encode_s:.2f} s"
    )
    mon.calls = dict(CALLS)
    CALLS.clear()
    w.close()
    viewer.close()
    return mon


def report(runs: dict[str, StallMonitor]) -> None:
    names = list(runs)
    phases = list(dict.fromkeys(p for m in runs.values() for p in m.order))
    print("\n## Max main-thread stall per phase: ms (stalls > 100 ms) [ratio to baseline]\n")
    print("| phase | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for p in phases:
        cells = []
        for m in runs.values():
            base = max(m.max_ms[BASELINE], 1.0)
            cells.append(f"{m.max_ms[p]:.0f} ({m.n_over[p]}) [{m.max_ms[p] / base:.1f}x]")
        print(f"| {p} | " + " | ".join(cells) + " |")
    for name, m in runs.items():
        worst = max(m.max_ms.items(), key=lambda kv: kv[1])
        verdict = "OK" if worst[1] <= TARGET_MS else "FREEZES"
        print(f"\n### {name}: {m.summary}; worst stall {worst[1]:.0f} ms in '{worst[0]}'")
        print(f"verdict vs {TARGET_MS} ms target: {verdict}")
        print(f"worst stalls (> {REPORT_MS} ms) and where the main thread was:")
        for phase, ms, cause in sorted(m.stalls, key=lambda s: -s[1])[:TOP]:
            print(f"  {ms:6.0f} ms  {phase:30s} {cause}")
        print("main-thread calls (timed from outside): calls, max ms, total ms")
        for key, t in sorted(m.calls.items(), key=lambda kv: -max(kv[1])):
            print(f"  {key:48s} {len(t):4d} {max(t):7.0f} {sum(t):8.0f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="8 x 512 x 512 instead of 64 x 2048^2")
    ap.add_argument("--backend", choices=("classical", "sam2", "both"), default="both")
    ap.add_argument("--data", choices=("lazy", "eager", "both"), default="both")
    ap.add_argument(
        "--commit",
        choices=("old", "new", "both"),
        default="new",
        help="old: plan + write on the GUI thread (before); new: planned in a worker, "
        "written in bands across event-loop turns (after)",
    )
    ap.add_argument(
        "--torch-threads",
        default="",
        help="comma-separated torch thread counts to compare (default: torch's own)",
    )
    args = ap.parse_args(argv)

    import napari_sam2.widget._dock  # noqa: F401  (keeps triton out before torch loads)

    torch = importlib.import_module("torch")

    instrument()

    shape = (8, 512, 512) if args.small else (64, 2048, 2048)
    t0 = time.perf_counter()
    path = make_tiff(shape)
    print(f"stack {shape} uint16 ({path.stat().st_size / 2**20:.0f} MiB) at {path}")
    print(f"CPU: {cpu_model()}; tick {TICK_MS} ms, report > {REPORT_MS} ms")
    backends = ("classical", "sam2") if args.backend == "both" else (args.backend,)
    modes = ("lazy", "eager") if args.data == "both" else (args.data,)
    commits = ("old", "new") if args.commit == "both" else (args.commit,)
    threads = [int(t) for t in args.torch_threads.split(",") if t] or [torch.get_num_threads()]
    runs = {}
    for b in backends:
        for mode in modes:
            for c in commits:
                for nt in threads:
                    torch.set_num_threads(nt)
                    t1, _ = time.perf_counter(), torch.manual_seed(0)
                    name = f"{b} / {mode} / commit {c} / {nt} thr"
                    runs[name] = scenario(path, b, mode == "lazy", shape[0], c)
                    gc.collect()
                    print(f"ran {name} in {time.perf_counter() - t1:.0f} s", flush=True)
    report(runs)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
