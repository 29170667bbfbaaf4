"""Process-wide precautions for GUI sessions (applied when the widget module is imported)."""

from __future__ import annotations

import os
import sys


def avoid_llvm_clash() -> None:
    """Keep ``triton`` out of GUI sessions.

    triton (pulled in by torchvision when present) ships its own LLVM; loading it after
    Mesa's LLVM-based OpenGL (software rendering, AMD/Intel drivers) is already in the
    process crashes with a segmentation fault.  We never use ``torch.compile``, so
    triton is not needed; set ``NAPARI_SAM2_ALLOW_TRITON=1`` to opt out.
    """
    if "triton" not in sys.modules and not os.environ.get("NAPARI_SAM2_ALLOW_TRITON"):
        sys.modules["triton"] = None  # torch then treats triton as not installed
