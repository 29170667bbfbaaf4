"""precision="auto" on the CPU: the decision rule, its on-disk calibration, and load_sam2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_sam2.engine.runtime import precision as P

AMX = {"fpu", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
AVX2 = {"fpu", "avx2", "fma"}


def test_native_bf16_from_flags():
    assert P.native_bf16(AMX, "x86_64")
    assert P.native_bf16({"avx2", "avx512_bf16"}, "x86_64")
    assert not P.native_bf16(AVX2, "x86_64")
    assert not P.native_bf16(set(), "x86_64")
    assert P.native_bf16({"fp", "asimd", "bf16"}, "aarch64")
    assert not P.native_bf16({"fp", "asimd"}, "aarch64")


@pytest.mark.parametrize(
    ("native", "fp32_s", "bf16_s", "agreement", "expected", "why"),
    [
        (False, 4.0, 1.0, 1.0, "fp32", "no native bf16"),  # never without native support
        (True, None, None, None, "fp32", "not calibrated"),
        (True, 2.0, 1.9, 0.999, "fp32", "not faster enough"),
        (True, 2.0, 1.0, 0.990, "fp32", "agree on 99.00%"),
        (True, 2.0, 1.0, 0.995, "bf16", "2.00× faster"),
        (True, 2.5, 1.1, 0.9991, "bf16", "masks agree on 99.91%"),
    ],
)
def test_decision_rule(native, fp32_s, bf16_s, agreement, expected, why):
    decision, reason = P.decide(native, fp32_s, bf16_s, agreement)
    assert decision == expected
    assert why in reason


def _cal(decision="bf16", sha="ab" * 32, native=True, **kw):
    d = dict(
        cpu=P.cpu_info()[0],
        model="sam2.1-tiny",
        checkpoint_sha256=sha,
        image_size=1024,
        torch_version=P._torch_version(),
        native_bf16=native,
        fp32_s=2.0,
        bf16_s=1.0,
        agreement=0.999,
        worst_agreement=0.99,
        decision=decision,
        reason="test",
    )
    d.update(kw)
    return P.Calibration(**d)


def test_auto_uses_fp32_until_a_calibration_says_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda *a, **k: True)
    sha = "ab" * 32
    assert P.auto_cpu_precision("sam2.1-tiny", sha, 1024, tmp_path) == "fp32"
    path = P.save_calibration(_cal(), tmp_path)
    assert path.parent == tmp_path and json.loads(path.read_text())["decision"] == "bf16"
    assert P.auto_cpu_precision("sam2.1-tiny", sha, 1024, tmp_path) == "bf16"
    # another checkpoint, size or model: not calibrated
    assert P.auto_cpu_precision("sam2.1-tiny", "cd" * 32, 1024, tmp_path) == "fp32"
    assert P.auto_cpu_precision("sam2.1-tiny", sha, 512, tmp_path) == "fp32"
    assert P.auto_cpu_precision("sam2.1-small", sha, 1024, tmp_path) == "fp32"
    assert P.auto_cpu_precision("sam2.1-tiny", None, 1024, tmp_path) == "fp32"
    # a calibration saying fp32 is respected; a corrupt file is ignored
    P.save_calibration(_cal("fp32"), tmp_path)
    assert P.auto_cpu_precision("sam2.1-tiny", sha, 1024, tmp_path) == "fp32"
    path.write_text("{not json")
    assert P.auto_cpu_precision("sam2.1-tiny", sha, 1024, tmp_path) == "fp32"


def test_auto_never_bf16_without_native_support(tmp_path, monkeypatch):
    P.save_calibration(_cal(), tmp_path)  # even with a (copied) bf16 verdict on disk
    monkeypatch.setattr(P, "native_bf16", lambda *a, **k: False)
    assert P.auto_cpu_precision("sam2.1-tiny", "ab" * 32, 1024, tmp_path) == "fp32"


def test_random_weights_calibration_is_not_saved(tmp_path):
    assert P.save_calibration(_cal(sha=None), tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_calibration_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(P.PRECISION_DIR_ENV, str(tmp_path / "p"))
    assert P.calibration_dir() == tmp_path / "p"
    monkeypatch.delenv(P.PRECISION_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert P.calibration_dir() == tmp_path / "x" / "napari-sam2" / "precision"


def test_mask_agreement_and_click_grid():
    a = np.zeros((10, 10), bool)
    b = a.copy()
    b[0, :5] = True
    assert P.mask_agreement(a, b) == pytest.approx(0.95)
    assert P.click_grid((100, 200), 2) == [(25, 50), (25, 150), (75, 50), (75, 150)]


def test_calibrate_without_native_bf16_times_nothing(sam2_random_segmenter, tmp_path, monkeypatch):
    monkeypatch.setenv(P.PRECISION_DIR_ENV, str(tmp_path))
    seg = sam2_random_segmenter
    seg.set_image(np.zeros((64, 64), np.uint8))
    cal = P.calibrate(seg, flags=AVX2)
    assert (cal.decision, cal.fp32_s, cal.bf16_s, cal.native_bf16) == ("fp32", None, None, False)
    assert "no native bf16" in cal.reason


@pytest.mark.slow  # bf16 is emulated (slow) on CPUs without native bf16
def test_calibrate_measures_and_caches(sam2_random_segmenter, shared_data, tmp_path, monkeypatch):
    """Real encodes in fp32 and bf16 (random weights, 256 px): the verdict is cached per
    CPU + model + checkpoint and then drives precision='auto'."""
    seg = sam2_random_segmenter
    image = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    cal = P.calibrate(seg, image, repeats=1, folder=tmp_path, flags=AMX, clicks=[(100, 100)])
    assert cal.native_bf16 and cal.fp32_s > 0 and cal.bf16_s > 0
    assert 0.0 <= cal.worst_agreement <= cal.agreement <= 1.0
    expected, _ = P.decide(True, cal.fp32_s, cal.bf16_s, cal.agreement)
    assert cal.decision == expected
    assert seg.backend.precision == "fp32"  # the live model is left as it was
    lm = seg.backend.loaded
    saved = P.load_calibration(lm.spec.name, lm.checkpoint_sha256, 256, tmp_path)
    assert saved == cal
    monkeypatch.setattr(P, "native_bf16", lambda *a, **k: True)
    assert P.auto_cpu_precision(lm.spec.name, lm.checkpoint_sha256, 256, tmp_path) == expected


def test_calibrate_pipeline_with_stubbed_timings(sam2_random_segmenter, tmp_path, monkeypatch):
    """The calibration steps with real encodes and predictions, timings stubbed (2× faster
    bf16): the decision follows the rule from the measured agreement, and is cached."""
    seg = sam2_random_segmenter
    seg.set_image(np.linspace(0, 1, 96 * 80, dtype=np.float32).reshape(96, 80))
    calls = []

    def fake_timed(backend, image, precision, repeats):
        calls.append(precision)
        return {"fp32": 2.0, "bf16": 1.0}[precision], backend.encode(image)

    monkeypatch.setattr(P, "_timed_encode", fake_timed)
    cal = P.calibrate(seg, folder=tmp_path, flags=AMX)
    assert calls == ["fp32", "bf16"]
    assert cal.speedup == 2.0 and cal.native_bf16
    # same embedding decoded in fp32 and under bf16 autocast (random weights: masks on the
    # edge of the threshold may flip, so only the bounds are fixed)
    assert 0.0 < cal.worst_agreement <= cal.agreement <= 1.0
    assert cal.decision == P.decide(True, 2.0, 1.0, cal.agreement)[0]
    assert cal.image_size == 256 and cal.model == "sam2.1-tiny"
    lm = seg.backend.loaded
    assert P.load_calibration(lm.spec.name, lm.checkpoint_sha256, 256, tmp_path) == cal


def test_load_sam2_auto_reads_the_calibration(sam2_random_checkpoint, tmp_path, monkeypatch):
    from napari_sam2.engine.model.checkpoints import file_sha256
    from napari_sam2.engine.model.load import load_sam2

    monkeypatch.setenv(P.PRECISION_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(P, "native_bf16", lambda *a, **k: True)
    sha = file_sha256(sam2_random_checkpoint)
    P.save_calibration(_cal(sha=sha, image_size=256), tmp_path)
    lm = load_sam2("tiny", sam2_random_checkpoint, device="cpu", image_size=256)
    assert lm.precision == "bf16"
    lm = load_sam2("tiny", sam2_random_checkpoint, device="cpu", image_size=256, precision="fp32")
    assert lm.precision == "fp32"  # an explicit choice wins
    monkeypatch.setattr(P, "native_bf16", lambda *a, **k: False)
    lm = load_sam2("tiny", sam2_random_checkpoint, device="cpu", image_size=256)
    assert lm.precision == "fp32"


def test_calibrate_rejects_other_backends(classical_segmenter):
    classical_segmenter.set_image(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="SAM 2 model on the CPU"):
        P.calibrate(classical_segmenter, save=False)
