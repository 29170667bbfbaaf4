"""Devices and numeric precision: cuda > mps > cpu, bf16 autocast where it pays off."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import DeviceError


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str = "auto"):
    """``"auto"`` → cuda > mps > cpu; an explicit device must exist here."""
    import torch

    dev = (device or "auto").lower()
    if dev == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            "device='cuda' was requested but PyTorch sees no CUDA GPU here; use 'auto' or 'cpu'."
        )
    if dev == "mps" and not _mps_available():
        raise DeviceError(
            "device='mps' was requested but Apple MPS is not available; use 'auto' or 'cpu'."
        )
    try:
        return torch.device(dev)
    except RuntimeError as e:
        raise DeviceError(f"Unknown device {device!r}: use auto, cuda, mps or cpu.") from e


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPUs where bf16 autocast can beat fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(device, precision: str = "auto") -> str:
    """``"auto"``: bf16 on CUDA GPUs that support it; fp32 elsewhere (CPU bf16 only when asked explicitly —
    see ``benchmarks/bench_precision.py``: it is a loss on CPUs without native bf16)."""
    p = (precision or "auto").lower()
    if p not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}.")
    if p == "auto":
        return "bf16" if device.type == "cuda" and _cuda_bf16() else "fp32"
    return p


def _cuda_bf16() -> bool:
    """Ampere and newer: bf16 autocast is fast and safe (older GPUs stay in fp32)."""
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported())
    except Exception:  # noqa: BLE001 - no driver, odd builds
        return False


def autocast(device, precision: str):
    """Context manager for the chosen precision."""
    import torch

    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


_SIZES = ("tiny", "small", "base_plus", "large")


def memory_advice(size: str | None = None, device=None, precision: str | None = None) -> str:
    """What to try when ``device`` runs out of memory with model ``size``: a smaller
    model, bf16, the CPU — only the remedies not already in use."""
    tips = []
    if size == _SIZES[0]:
        tips.append(f"'{size}' is already the smallest model")
    else:
        smaller = list(_SIZES[: _SIZES.index(size)]) if size in _SIZES else [_SIZES[0]]
        tips.append(f"choose a smaller model ({', '.join(smaller)})")
    if precision != "bf16":
        tips.append("use precision bf16")
    if device is None or not str(device).startswith("cpu"):
        tips.append("run on the CPU (device cpu)")
    tips.append("close other programs using the memory")
    return "; ".join(tips) + "."


def free_device_memory(dev) -> None:
    """Hand cached blocks back to the device after an out-of-memory error."""
    import gc

    gc.collect()
    with contextlib.suppress(Exception):  # best effort
        import torch

        if str(dev).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
