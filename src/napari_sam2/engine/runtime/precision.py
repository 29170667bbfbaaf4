"""``precision="auto"`` on the CPU: bf16 only where it is native, measured faster and safe.

The decision rule (docs/performance.md):

1. **Native bf16 or nothing.**  bf16 autocast is considered only on CPUs with native bf16
   arithmetic: x86 ``avx512_bf16`` or ``amx_bf16``, ARM ``bf16`` (``/proc/cpuinfo`` flags).
   Elsewhere it is emulated and far slower (measured 9× on an AVX2-only CPU): fp32, always.
2. **Measured, not assumed.**  :func:`calibrate` encodes one real image with the loaded
   model in fp32 and in bf16 and predicts the same clicks from both embeddings.  bf16 is
   chosen when it is at least :data:`MIN_SPEEDUP` times faster **and** its masks agree with
   the fp32 masks on at least :data:`MIN_AGREEMENT` of the pixels.
3. **Cached per CPU, model and checkpoint.**  The verdict is written as JSON under
   ``~/.cache/napari-sam2/precision`` (``$NAPARI_SAM2_PRECISION_DIR`` overrides), keyed by
   the CPU model, the model name, the checkpoint's SHA-256, the input size and the torch
   version.  ``precision="auto"`` on the CPU uses fp32 until such a calibration says bf16.

>>> seg = Segmenter("tiny", checkpoint="sam2.1_hiera_tiny.pt", device="cpu", precision="fp32")
>>> cal = calibrate(seg, image)          # a few encodes, once per machine and checkpoint
>>> cal.decision, cal.speedup, cal.agreement
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageError
from ..planes import PlaneSource
from ..prompts import make_objects

MIN_SPEEDUP = 1.15  # fp32 time / bf16 time
MIN_AGREEMENT = 0.995  # fraction of mask pixels equal to the fp32 masks
PRECISION_DIR_ENV = "NAPARI_SAM2_PRECISION_DIR"
_NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_info() -> tuple[str, set[str]]:
    """(model name, feature flags) of this CPU from ``/proc/cpuinfo`` (empty elsewhere)."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and name in ("", platform.machine()):
                name = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    return name, flags


def native_bf16(flags: set[str] | None = None, machine: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16, AMX, or ARM ``bf16``)."""
    flags = cpu_info()[1] if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return "bf16" in flags
    return any(f in flags for f in _NATIVE_FLAGS)


def decide(
    native: bool,
    fp32_s: float | None,
    bf16_s: float | None,
    agreement: float | None,
    *,
    min_speedup: float = MIN_SPEEDUP,
    min_agreement: float = MIN_AGREEMENT,
) -> tuple[str, str]:
    """The rule: ``(precision, reason)`` from the CPU's support and the measurements."""
    if not native:
        return "fp32", "this CPU has no native bf16 (emulated bf16 is much slower)"
    if not fp32_s or not bf16_s or agreement is None:
        return "fp32", "not calibrated"
    speedup = fp32_s / bf16_s
    if speedup < min_speedup:
        return "fp32", f"bf16 is not faster enough ({speedup:.2f}× < {min_speedup}×)"
    if agreement < min_agreement:
        return "fp32", f"bf16 masks agree on {agreement:.2%} of pixels (< {min_agreement:.1%})"
    return "bf16", f"bf16 is {speedup:.2f}× faster, masks agree on {agreement:.2%} of pixels"


@dataclass
class Calibration:
    """One measured verdict (what :func:`calibrate` returns and caches)."""

    cpu: str
    model: str
    checkpoint_sha256: str | None
    image_size: int
    torch_version: str
    native_bf16: bool
    fp32_s: float | None
    bf16_s: float | None
    agreement: float | None
    worst_agreement: float | None
    decision: str
    reason: str
    measured_at: str = ""

    @property
    def speedup(self) -> float | None:
        return self.fp32_s / self.bf16_s if self.fp32_s and self.bf16_s else None


def calibration_dir(folder=None) -> Path:
    if folder is not None:
        return Path(folder)
    env = os.environ.get(PRECISION_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-sam2" / "precision"


def calibration_key(cpu: str, model: str, sha: str, image_size: int, torch_version: str) -> str:
    text = json.dumps([cpu, model, sha, int(image_size), torch_version])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def load_calibration(model: str, sha: str | None, image_size: int, folder=None):
    """The cached :class:`Calibration` for this CPU and model, or None."""
    if not sha:
        return None
    key = calibration_key(cpu_info()[0], model, sha, image_size, _torch_version())
    path = calibration_dir(folder) / f"{key}.json"
    try:
        return Calibration(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def auto_cpu_precision(model: str, sha: str | None, image_size: int, folder=None) -> str:
    """What ``precision="auto"`` means on this CPU for this model: fp32 unless native bf16
    and a cached calibration chose bf16."""
    if not native_bf16():
        return "fp32"
    cal = load_calibration(model, sha, image_size, folder)
    return cal.decision if cal is not None and cal.native_bf16 else "fp32"


def save_calibration(cal: Calibration, folder=None) -> Path | None:
    """Write atomically (temporary file + rename); None when the model has no checksum."""
    if not cal.checkpoint_sha256:
        return None
    d = calibration_dir(folder)
    d.mkdir(parents=True, exist_ok=True)
    key = calibration_key(
        cal.cpu, cal.model, cal.checkpoint_sha256, cal.image_size, cal.torch_version
    )
    path = d / f"{key}.json"
    tmp = d / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(asdict(cal), indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def mask_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels where two boolean masks (any shape) agree."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a == b).mean()) if a.size else 1.0


def click_grid(shape, n: int = 4) -> list[tuple[int, int]]:
    """``n × n`` clicks spread over a plane (cell centres)."""
    h, w = shape
    return [(int((i + 0.5) * h / n), int((j + 0.5) * w / n)) for i in range(n) for j in range(n)]


def compare_embeddings(backend, emb_a, emb_b, shape, clicks=None, *, precisions=None):
    """(pooled, worst) mask agreement of the same clicks predicted from two embeddings.

    ``precisions`` (a, b): the backend precision to decode each with (default: as is).
    """

    clicks = click_grid(shape) if clicks is None else clicks
    same, total, worst = 0, 0, 1.0
    saved = backend.precision
    try:
        for rc in clicks:
            masks = []
            for emb, prec in zip((emb_a, emb_b), precisions or (saved, saved), strict=True):
                backend.precision = prec
                [p] = backend.predict(emb, make_objects([rc], [1]), multimask=False)
                masks.append(p.mask)
            eq = int((masks[0] == masks[1]).sum())
            same, total = same + eq, total + masks[0].size
            worst = min(worst, eq / masks[0].size)
    finally:
        backend.precision = saved
    return (same / total if total else 1.0), worst


def _timed_encode(backend, image, precision, repeats):
    saved = backend.precision
    backend.precision = precision
    try:
        emb = backend.encode(image)  # warm-up (first use of the kernels)
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            emb = backend.encode(image)
            times.append(time.perf_counter() - t0)
    finally:
        backend.precision = saved
    return statistics.median(times), emb


def calibrate(
    segmenter,
    image=None,
    *,
    repeats: int = 2,
    clicks=None,
    folder=None,
    save: bool = True,
    force: bool = False,
    flags: set[str] | None = None,
) -> Calibration:
    """Measure fp32 vs bf16 for the segmenter's SAM 2 model on this CPU; cache the verdict.

    ``image``: a real 2-D (or RGB) image; default: the first plane of the segmenter's
    image.  Without native bf16 nothing is timed (bf16 is never chosen) unless ``force``.
    The result is cached on disk (``save``) when the checkpoint has a SHA-256, and is what
    ``precision="auto"`` uses on this CPU from then on.
    """

    backend = segmenter.backend
    if not getattr(backend, "calibrates_cpu_precision", False) or str(backend.device) != "cpu":
        raise ValueError("calibrate() measures a SAM 2 model on the CPU (device='cpu').")
    if image is None:
        src = segmenter.require_source()
        sam_image = src.sam_image(next(iter(np.ndindex(*src.index_shape))))
    else:
        arr = np.asarray(image)
        if arr.ndim not in (2, 3):
            raise ImageError(f"calibrate() needs one 2-D or RGB image, got shape {arr.shape}.")
        sam_image = PlaneSource(arr).sam_image(())
    name, cpu_flags = cpu_info()
    native = native_bf16(cpu_flags if flags is None else flags)
    lm = backend.loaded
    fp32_s = bf16_s = agreement = worst = None
    if native or force:
        fp32_s, e32 = _timed_encode(backend, sam_image, "fp32", repeats)
        bf16_s, e16 = _timed_encode(backend, sam_image, "bf16", repeats)
        agreement, worst = compare_embeddings(
            backend, e32, e16, sam_image.shape[:2], clicks, precisions=("fp32", "bf16")
        )
    decision, reason = decide(native, fp32_s, bf16_s, agreement)
    cal = Calibration(
        cpu=name,
        model=lm.spec.name,
        checkpoint_sha256=lm.checkpoint_sha256,
        image_size=int(backend.image_size),
        torch_version=_torch_version(),
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
        save_calibration(cal, folder)
    return cal
