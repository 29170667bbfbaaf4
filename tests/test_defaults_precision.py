"""precision="auto" by default: the saved verdict, the hint, the measurement, the widget's
background run and ``napari-sam2 calibrate`` (CPU flags and timings mocked)."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.errors import Cancelled
from napari_sam2.engine.runtime import auto_precision as ap
from napari_sam2.engine.runtime import precision as P

NATIVE = {"avx2", "avx512_bf16", "amx_bf16"}
AVX2 = {"avx2", "fma"}


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """Mocked CPU flags (``cpu.flags = ...``) and an empty verdict folder."""
    monkeypatch.setenv(P.PRECISION_DIR_ENV, str(tmp_path / "verdicts"))
    monkeypatch.delenv(ap.AUTO_ENV, raising=False)  # conftest turns it off elsewhere

    class CPU:
        flags = set(NATIVE)

    monkeypatch.setattr(P, "cpu_info", lambda: ("Test CPU 9000", CPU.flags))
    return CPU


def _seg(ckpt, precision="auto"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = Segmenter(
            "tiny", checkpoint=ckpt, backend="sam2", device="cpu", image_size=256,
            precision=precision,
        )  # fmt: skip
    return seg, [w for w in caught if issubclass(w.category, ap.PrecisionHint)]


def _verdict(seg, decision="bf16", fp32_s=2.2, bf16_s=1.0, agreement=0.999):
    d = seg.backend.describe()
    return P.Calibration(
        "Test CPU 9000", d["model"], d["checkpoint_sha256"], d["image_size"],
        P._torch_version(), True, fp32_s, bf16_s, agreement, agreement, decision, "test",
    )  # fmt: skip


def test_native_cpu_without_verdict_runs_fp32_and_says_how_to_get_one(cpu, sam2_random_checkpoint):
    seg, hints = _seg(sam2_random_checkpoint)
    assert seg.backend.precision == "fp32"
    assert seg.precision_info.reason == "not calibrated yet on this CPU"
    assert len(hints) == 1 and "napari-sam2 calibrate" in str(hints[0].message)
    assert ap.needs_calibration(seg)


def test_automatic_measurement_can_be_turned_off(cpu, sam2_random_checkpoint, monkeypatch):
    seg, _ = _seg(sam2_random_checkpoint)
    monkeypatch.setenv(ap.AUTO_ENV, "0")
    assert not ap.needs_calibration(seg)
    assert ap.calibrate_if_needed(seg, ap.CLI_MIN_PLANES + 1) is None


def test_saved_bf16_verdict_is_used_and_said(cpu, sam2_random_checkpoint):
    seg, _ = _seg(sam2_random_checkpoint)
    P.save_calibration(_verdict(seg))
    seg2, hints = _seg(sam2_random_checkpoint)
    assert seg2.backend.precision == "bf16" and seg2.describe()["precision"] == "bf16"
    assert seg2.precision_info.text() == "bf16: measured 2.2× faster, masks agree 99.9 %"
    assert not hints and not ap.needs_calibration(seg2)


def test_never_bf16_without_native_support(cpu, sam2_random_checkpoint):
    seg, _ = _seg(sam2_random_checkpoint)
    P.save_calibration(_verdict(seg))  # even with a (foreign) bf16 verdict on file
    cpu.flags = set(AVX2)
    seg2, hints = _seg(sam2_random_checkpoint)
    assert seg2.backend.precision == "fp32" and not hints
    assert seg2.precision_info.reason == "this CPU has no native bf16"
    assert not ap.needs_calibration(seg2)
    cal = ap.measure(seg2, save=False)
    assert cal.decision == "fp32" and cal.fp32_s is None  # nothing timed


def test_explicit_precision_is_kept(cpu, sam2_random_checkpoint):
    seg, _ = _seg(sam2_random_checkpoint)
    P.save_calibration(_verdict(seg))
    seg2, _ = _seg(sam2_random_checkpoint, precision="fp32")
    assert seg2.backend.precision == "fp32" and not ap.needs_calibration(seg2)
    assert ap.apply(seg2, _verdict(seg2)).precision == "fp32"


@pytest.mark.parametrize(
    ("fp32_s", "bf16_s", "decision"), [(2.2, 1.0, "bf16"), (1.05, 1.0, "fp32")]
)
def test_measure_with_mocked_timings_decides_saves_and_applies(
    cpu, sam2_random_checkpoint, monkeypatch, fp32_s, bf16_s, decision
):
    seg, _ = _seg(sam2_random_checkpoint)
    seen = []
    real_encode = seg.backend.encode

    def spy(image, cancel=None, precision=None):
        seen.append((precision, seg.backend.precision))
        return real_encode(image, cancel=cancel, precision=precision)

    monkeypatch.setattr(seg.backend, "encode", spy)
    times = {"fp32": fp32_s, "bf16": bf16_s}

    def timed(backend, image, precision, repeats, cancel=None):
        return times[precision], backend.encode(image, cancel=cancel, precision=precision)

    monkeypatch.setattr(ap, "timed_encode", timed)
    cal = ap.measure(seg)
    assert cal.decision == decision and cal.agreement > 0.9
    # each encode said its precision; the shared one never changed meanwhile
    assert [p for p, _ in seen] == ["fp32", "bf16"] and {s for _, s in seen} == {"fp32"}
    info = ap.apply(seg, cal)
    assert seg.backend.precision == decision == info.precision
    seg2, hints = _seg(sam2_random_checkpoint)  # the next session uses the saved verdict
    assert seg2.backend.precision == decision and not hints


def test_measure_is_cancellable(cpu, sam2_random_checkpoint):
    seg, _ = _seg(sam2_random_checkpoint)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        ap.measure(seg, cancel=ev)
    assert ap.needs_calibration(seg)  # nothing saved


def test_cli_rule_calibrates_only_runs_of_more_than_a_few_planes(
    cpu, sam2_random_checkpoint, monkeypatch
):
    seg, _ = _seg(sam2_random_checkpoint)
    monkeypatch.setattr(ap, "measure", lambda s, **kw: _verdict(s))
    said = []
    assert ap.calibrate_if_needed(seg, ap.CLI_MIN_PLANES, report=said.append) is None
    info = ap.calibrate_if_needed(seg, ap.CLI_MIN_PLANES + 1, report=said.append)
    assert info.precision == "bf16" and seg.backend.precision == "bf16"
    assert said[-1] == "Precision bf16: measured 2.2× faster, masks agree 99.9 %"


def test_classical_backend_is_left_alone(cpu):
    seg = Segmenter(backend="classical")
    assert seg.precision_info.reason == "as the backend runs"
    assert not ap.needs_calibration(seg)
    with pytest.raises(ValueError, match="SAM 2 model on the CPU"):
        ap.measure(seg)


def test_calibrate_command_prints_the_verdict(cpu, sam2_random_checkpoint, monkeypatch, capsys):
    from napari_sam2.cli import main

    times = {"fp32": 2.2, "bf16": 1.0}
    monkeypatch.setattr(
        ap, "timed_encode",
        lambda b, img, p, r, cancel=None: (times[p], b.encode(img, cancel=cancel, precision=p)),
    )  # fmt: skip
    code = main(["calibrate", "--checkpoint", str(sam2_random_checkpoint), "--backend", "sam2",
                 "--image-size", "256"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "fp32 2.20 s, bf16 1.00 s per encode" in out
    assert "verdict: bf16" in out and "saved" in out
    seg2, _ = _seg(sam2_random_checkpoint)
    assert seg2.backend.precision == "bf16"


def test_widget_measures_in_the_background_gives_way_and_resumes(
    cpu, sam2_random_checkpoint, make_napari_viewer, qtbot, monkeypatch
):
    from widget_helpers import TIMEOUT, ready_widget

    seg, _ = _seg(sam2_random_checkpoint)
    calls = []

    def slow_measure(s, cancel=None, **kw):
        calls.append(cancel)
        if len(calls) == 1:  # the first run is cancelled by the user
            cancel.wait(30)
            raise Cancelled("Calibration cancelled.")
        return _verdict(s)

    monkeypatch.setattr(ap, "measure", slow_measure)
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, np.zeros((64, 64), np.uint8), seg)
    [bg] = [p.background for p in w.panels if hasattr(p, "background")]
    cal = bg.calibration
    cal._timer.setInterval(50)
    assert cal.start_if_needed(seg) and cal.running
    w.user_action.emit()  # a click: the measurement stops at once
    qtbot.waitUntil(lambda: len(calls) == 2 and not cal.running, timeout=TIMEOUT)
    assert isinstance(cal.errors[0], Cancelled) and calls[0].is_set()
    assert seg.backend.precision == "bf16"
    assert "precision bf16: measured 2.2× faster, masks agree 99.9 %" in w.status.text()
    assert "bf16 (measured 2.2× faster" in w.describe()


def test_precompute_measures_before_a_stack_and_runs_it_in_the_verdict(
    cpu, sam2_random_checkpoint, monkeypatch, tmp_path, capsys
):
    import tifffile

    from napari_sam2.cli import main
    from napari_sam2.engine import segmenter as segmenter_module

    monkeypatch.setattr(ap, "measure", lambda s, **kw: _verdict(s))
    ran_in = []

    def fake_precompute(self, progress=None):  # the run itself is not what is tested
        ran_in.append(self.backend.precision)
        return 0

    monkeypatch.setattr(segmenter_module.Segmenter, "precompute", fake_precompute)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((ap.CLI_MIN_PLANES + 1, 32, 32), np.uint8))
    args = ["precompute", str(stack), "--disk-cache", str(tmp_path / "emb"), "--checkpoint",
            str(sam2_random_checkpoint), "--backend", "sam2", "--image-size", "256",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert ran_in == ["bf16"]
    assert "Precision bf16: measured 2.2× faster" in capsys.readouterr().err


def test_batch_measures_once_before_the_workers_only_when_it_can_matter(cpu, monkeypatch):
    monkeypatch.setattr(ap, "measure", lambda s, **kw: _verdict(s))
    made = []

    def make():
        made.append(1)
        return _seg_stub()

    n = ap.CLI_MIN_PLANES + 1
    assert ap.calibrate_before_run(make, n - 1) is None
    assert ap.calibrate_before_run(make, n, precision="fp32") is None
    assert ap.calibrate_before_run(make, n, device="cuda") is None
    monkeypatch.setenv(ap.AUTO_ENV, "0")
    assert ap.calibrate_before_run(make, n) is None
    monkeypatch.delenv(ap.AUTO_ENV)
    cpu.flags = set(AVX2)
    assert ap.calibrate_before_run(make, n) is None
    assert made == []  # no model loaded for nothing
    cpu.flags = set(NATIVE)
    monkeypatch.setattr(ap, "needs_calibration", lambda s: True)
    monkeypatch.setattr(ap, "apply", lambda s, cal: ap.PrecisionInfo("auto", cal.decision, "x"))
    assert ap.calibrate_before_run(make, n).precision == "bf16" and made == [1]


def _seg_stub():
    class Backend:
        precision = "fp32"

        def describe(self):
            return {"model": "sam2.1-tiny", "checkpoint_sha256": "ab" * 32, "image_size": 256}

    class Seg:
        backend = Backend()

    return Seg()


@pytest.mark.parametrize(("gpu_precision", "reason"),
                         [("bf16", "this GPU supports bf16"), ("fp32", "this GPU has no fast bf16")])  # fmt: skip
def test_cuda_auto_precision_says_why(gpu_precision, reason):
    class Backend:
        loaded = object()
        precision = gpu_precision

        def describe(self):
            return {"device": "cuda:0", "precision": gpu_precision}

        def encode(self, image, cancel=None, precision=None):
            raise AssertionError("not measured on a GPU")

    seg = type("Seg", (), {"backend": Backend()})()
    info = ap.settle(seg, "auto")
    assert (info.precision, info.reason) == (gpu_precision, reason)
    assert ap.settle(seg, "fp32").reason == "as the backend runs"


def test_transformers_backend_follows_the_same_rule(cpu, sam2_random_checkpoint, monkeypatch):
    pytest.importorskip("transformers")

    def seg():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ap.PrecisionHint)
            return Segmenter("tiny", sam2_random_checkpoint, backend="transformers", device="cpu")

    s = seg()
    assert s.describe()["backend"] == "transformers" and s.backend.precision == "fp32"
    assert ap.needs_calibration(s) == bool(s.describe().get("checkpoint_sha256"))
    times = {"fp32": 2.2, "bf16": 1.0}
    monkeypatch.setattr(
        ap, "timed_encode",
        lambda b, img, p, r, cancel=None: (times[p], b.encode(img, cancel=cancel, precision=p)),
    )  # fmt: skip
    cal = ap.measure(s, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    assert cal.decision == "bf16" and cal.agreement > 0.9
    assert ap.apply(s, cal).precision == "bf16" == s.backend.precision
    if cal.checkpoint_sha256:  # saved: the next transformers session starts in bf16
        assert seg().backend.precision == "bf16"
