"""Shared helpers of the benchmark scripts (not a test module)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> str:
    import os

    import torch

    from napari_sam2.engine.runtime.devices import cpu_has_native_bf16

    return (
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores, torch threads "
        f"{torch.get_num_threads()}, native bf16: {cpu_has_native_bf16()}); "
        f"torch {torch.__version__}"
    )


def sample_image():
    """The shipped 2D nuclei sample (512x512 uint16)."""
    import tifffile

    from napari_sam2.io.samples import sample_path

    return tifffile.imread(sample_path("nuclei_2d"))
