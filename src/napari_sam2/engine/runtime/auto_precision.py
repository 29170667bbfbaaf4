"""``precision="auto"`` by default: bf16 on CPUs where it is native *and* measured to pay.

The rule and the measurement are :mod:`napari_sam2.engine.runtime.precision`'s (``decide``, the
saved :class:`~napari_sam2.engine.runtime.precision.Calibration` verdicts); this module is the
policy around them:

- :func:`settle` (every :class:`~napari_sam2.engine.Segmenter` runs it): for a SAM 2 model
  (official or transformers) on the CPU with ``precision="auto"``, use the saved verdict
  for this CPU, model, checkpoint, input size and torch; none on a native-bf16 CPU means
  fp32 for now and a hint, once, on how to get one.  Never bf16 without native support.
- :func:`needs_calibration` / :func:`measure` / :func:`apply`: the widget runs
  :func:`measure` in the background after the warm-up (cancellable between encoder blocks,
  nothing shared is changed while it runs), the CLI before a run of more than
  :data:`CLI_MIN_PLANES` planes, and ``napari-sam2 calibrate`` on demand; :func:`apply`
  switches the running model to the verdict.
- :func:`reason_text`: the status line's "bf16: measured 2.2× faster, masks agree 99.9 %".
"""

from __future__ import annotations

import inspect
import logging
import os
import statistics
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import Cancelled, ImageError
from . import precision as _precision

log = logging.getLogger(__name__)
AUTO_ENV = "NAPARI_SAM2_AUTO_CALIBRATE"  # "0": never measure by itself (the test suite)
CLI_MIN_PLANES = 4  # segment/precompute runs of more planes calibrate first (once per machine)
HINT = (
    "This CPU computes bf16 natively, but no precision verdict is saved for this model: "
    "running fp32. Measure once with `napari-sam2 calibrate --checkpoint CKPT` (or "
    "napari_sam2.engine.runtime.auto_precision.measure(segmenter)); bf16 is then used wherever it "
    "measured faster with the same masks."
)


class PrecisionHint(UserWarning):
    """``precision="auto"`` on a native-bf16 CPU without a saved verdict (said once)."""


@dataclass
class PrecisionInfo:
    """Which precision a segmenter runs and why (``Segmenter.precision_info``)."""

    requested: str
    precision: str
    reason: str
    calibration: _precision.Calibration | None = None

    def text(self) -> str:
        return f"{self.precision}: {self.reason}"


def _facts(backend) -> dict:
    try:
        return dict(backend.describe())
    except Exception:  # a custom backend without describe(): nothing to calibrate
        return {}


def can_calibrate(backend) -> bool:
    """A SAM 2 model on the CPU whose encode takes a per-call ``precision``."""
    if getattr(backend, "loaded", None) is None:
        return False
    if not str(_facts(backend).get("device", "")).startswith("cpu"):
        return False
    try:
        return "precision" in inspect.signature(backend.encode).parameters
    except (TypeError, ValueError):
        return False


def _saved(backend, folder=None):
    d = _facts(backend)
    return _precision.load_calibration(
        str(d.get("model")), d.get("checkpoint_sha256"), int(d.get("image_size") or 0), folder
    )


def reason_text(cal: _precision.Calibration) -> str:
    """``measured 2.2× faster, masks agree 99.9 %`` (or why bf16 was not chosen)."""
    if cal.speedup and cal.agreement is not None:
        facts = f"{cal.speedup:.1f}× faster, masks agree {100 * cal.agreement:.1f} %"
        if cal.decision == "bf16":
            return f"measured {facts}"
        need = f"≥ {_precision.MIN_SPEEDUP}× and ≥ {100 * _precision.MIN_AGREEMENT:.1f} %"
        return f"bf16 measured {facts} (needs {need})"
    return cal.reason


def _not_cpu_reason(backend, requested: str, current: str) -> str:
    """Why a model off the CPU (or a custom backend) runs ``current``."""
    device = str(_facts(backend).get("device", ""))
    if requested == "auto" and device.startswith("cuda"):
        return "this GPU supports bf16" if current == "bf16" else "this GPU has no fast bf16"
    return "as the backend runs"


def settle(seg, requested: str, *, folder=None, flags=None) -> PrecisionInfo:
    """Decide ``seg``'s precision at creation (see the module notes); returns the info."""
    backend = seg.backend
    requested = str(requested or "auto").lower()
    current = str(getattr(backend, "precision", _facts(backend).get("precision", "fp32")))
    if not can_calibrate(backend):
        return PrecisionInfo(requested, current, _not_cpu_reason(backend, requested, current))
    if requested != "auto":
        return PrecisionInfo(requested, current, "asked for")
    flags = _precision.cpu_info()[1] if flags is None else flags
    if not _precision.native_bf16(flags):
        _set(backend, "fp32")
        return PrecisionInfo(requested, "fp32", "this CPU has no native bf16")
    cal = _saved(backend, folder)
    if cal is None:
        _set(backend, "fp32")
        if _facts(backend).get("checkpoint_sha256"):
            warnings.warn(HINT, PrecisionHint, stacklevel=3)
        return PrecisionInfo(requested, "fp32", "not calibrated yet on this CPU")
    _set(backend, cal.decision)
    return PrecisionInfo(requested, cal.decision, reason_text(cal), cal)


def needs_calibration(seg, *, folder=None, flags=None) -> bool:
    """Should a measurement run now? ``auto`` asked, a SAM 2 model on a native-bf16 CPU,
    a checkpoint (its verdict can be saved), no verdict saved yet, and
    ``$NAPARI_SAM2_AUTO_CALIBRATE`` not ``0``."""
    if os.environ.get(AUTO_ENV, "1").strip() == "0":
        return False
    info = getattr(seg, "precision_info", None)
    if info is None or info.requested != "auto" or info.calibration is not None:
        return False
    backend = seg.backend
    if not can_calibrate(backend) or not _facts(backend).get("checkpoint_sha256"):
        return False
    flags = _precision.cpu_info()[1] if flags is None else flags
    return _precision.native_bf16(flags) and _saved(backend, folder) is None


def _set(backend, precision: str) -> None:
    backend.precision = precision
    loaded = getattr(backend, "loaded", None)
    if loaded is not None and hasattr(loaded, "precision"):
        loaded.precision = precision


def timed_encode(backend, image, precision: str, repeats: int, cancel=None):
    """(median seconds, embedding) of ``repeats`` encodes after one warm-up encode."""
    emb = backend.encode(image, cancel=cancel, precision=precision)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        emb = backend.encode(image, cancel=cancel, precision=precision)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), emb


def _sam_image(seg, image) -> np.ndarray:
    from ..planes import PlaneSource

    if image is None:
        src = seg.source
        if src is None:  # no image yet: a textured test card at the model's input size
            s = int(_facts(seg.backend).get("image_size") or 1024)
            rng = np.random.default_rng(0)
            yy, xx = np.mgrid[:s, :s] / s
            card = 0.5 + 0.25 * np.sin(12 * xx) * np.cos(9 * yy) + 0.1 * rng.random((s, s))
            return np.repeat(card.astype(np.float32)[..., None], 3, axis=-1)
        return src.sam_image(next(iter(np.ndindex(*src.index_shape))))
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ImageError(f"Calibration needs one 2-D or RGB image, got shape {arr.shape}.")
    return PlaneSource(arr).sam_image(())


def measure(
    seg, image=None, *, cancel=None, repeats: int = 2, save: bool = True, folder=None, flags=None
) -> _precision.Calibration:
    """Time fp32 vs bf16 encodes of one image and compare their masks; save the verdict.

    Nothing shared changes while it runs (each encode says its own precision), so the
    user's clicks may run meanwhile; ``cancel`` stops it between encoder blocks with
    :class:`Cancelled`.  ``image``: default the segmenter's first plane, or a test card.
    Without native bf16 nothing is timed and the verdict is fp32.
    """
    backend = seg.backend
    if not can_calibrate(backend):
        raise ValueError("Calibration measures a SAM 2 model on the CPU (device='cpu').")
    sam_image = _sam_image(seg, image)
    name, cpu_flags = _precision.cpu_info()
    native = _precision.native_bf16(cpu_flags if flags is None else flags)
    fp32_s = bf16_s = agreement = worst = None
    if native:
        fp32_s, e32 = timed_encode(backend, sam_image, "fp32", repeats, cancel)
        bf16_s, e16 = timed_encode(backend, sam_image, "bf16", repeats, cancel)
        if cancel is not None and cancel.is_set():
            raise Cancelled("Calibration cancelled.")
        agreement, worst = _precision.compare_embeddings(backend, e32, e16, sam_image.shape[:2])
    decision, reason = _precision.decide(native, fp32_s, bf16_s, agreement)
    d = _facts(backend)
    import torch

    cal = _precision.Calibration(
        cpu=name,
        model=str(d.get("model")),
        checkpoint_sha256=d.get("checkpoint_sha256"),
        image_size=int(d.get("image_size") or 0),
        torch_version=str(torch.__version__),
        native_bf16=native,
        fp32_s=fp32_s,
        bf16_s=bf16_s,
        agreement=agreement,
        worst_agreement=worst,
        decision=decision,
        reason=reason,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    if save:
        _precision.save_calibration(cal, folder)
    log.info("precision calibration: %s (%s)", decision, reason)
    return cal


def apply(seg, cal: _precision.Calibration) -> PrecisionInfo:
    """Run ``seg`` in the verdict's precision from now on (``auto`` requests only)."""
    info = getattr(seg, "precision_info", None)
    requested = info.requested if info is not None else "auto"
    if requested != "auto":
        return info
    _set(seg.backend, cal.decision)
    seg.precision_info = PrecisionInfo(requested, cal.decision, reason_text(cal), cal)
    return seg.precision_info


def calibrate_if_needed(seg, n_planes: int, *, report=None) -> PrecisionInfo | None:
    """The CLI's rule: before a run of more than :data:`CLI_MIN_PLANES` planes, measure
    (once per machine and model) and apply; ``report(text)`` says what happened."""
    if n_planes <= CLI_MIN_PLANES or not needs_calibration(seg):
        return None
    if report is not None:
        report("Measuring fp32 vs bf16 on this CPU (once per model)…")
    info = apply(seg, measure(seg))
    if report is not None:
        report(f"Precision {info.text()}")
    return info


def calibrate_before_run(
    make_segmenter, n_planes: int, *, precision="auto", device="auto", report=None
) -> PrecisionInfo | None:
    """:func:`calibrate_if_needed` for a run whose workers build their own segmenters (the
    batch command): measure once here with ``make_segmenter()``, save the verdict, and
    every worker's ``precision="auto"`` picks it up.  The model is loaded here only when
    a verdict could be missing (``auto`` precision, a CPU with native bf16)."""
    if n_planes <= CLI_MIN_PLANES or str(precision or "auto").lower() != "auto":
        return None
    if os.environ.get(AUTO_ENV, "1").strip() == "0":
        return None
    if str(device or "auto").lower() not in ("auto", "cpu"):
        return None
    if not _precision.native_bf16(_precision.cpu_info()[1]):
        return None
    with warnings.catch_warnings():  # the hint is what this measurement answers
        warnings.simplefilter("ignore", PrecisionHint)
        seg = make_segmenter()
    return calibrate_if_needed(seg, n_planes, report=report)


__all__ = [
    "AUTO_ENV",
    "calibrate_before_run",
    "CLI_MIN_PLANES",
    "PrecisionHint",
    "PrecisionInfo",
    "apply",
    "calibrate_if_needed",
    "can_calibrate",
    "measure",
    "needs_calibration",
    "reason_text",
    "settle",
]
