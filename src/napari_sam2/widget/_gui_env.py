"""A precaution for GUI sessions on Mesa's LLVM-based OpenGL, applied by the dock widget."""

from __future__ import annotations

import logging
import os
import sys

OPT_OUT = "NAPARI_SAM2_ALLOW_TRITON"
MESA_LLVM = "libLLVM"  # Mesa's OpenGL drivers (llvmpipe, radeonsi, ...) load libLLVM-NN.so
log = logging.getLogger(__name__)


def mesa_llvm_loaded(maps: str = "/proc/self/maps") -> bool:
    """Is a shared LLVM library (as Mesa's OpenGL loads it) mapped into this process?

    Linux only (reads ``/proc/self/maps``); False elsewhere or when it cannot be read.
    """
    try:
        with open(maps, encoding="utf-8", errors="replace") as f:
            return any(MESA_LLVM in line for line in f)
    except OSError:
        return False


def avoid_llvm_clash(maps: str = "/proc/self/maps") -> bool:
    """Keep ``triton`` out of this process when Mesa's LLVM is already in it.

    triton (imported by torchvision, which sam2 imports) ships its own LLVM; importing it
    after Mesa's LLVM-based OpenGL (software rendering with llvmpipe, some AMD/Intel
    drivers) was loaded crashes the process with a segmentation fault.  napari loads the
    GL driver when its viewer is created, so the dock widget calls this when it is created,
    before any model is loaded.  Only then, and only when a Mesa LLVM library is mapped,
    ``sys.modules["triton"]`` is set to None (torch then treats triton as not installed;
    napari-sam2 never uses ``torch.compile``).  A triton already imported is left alone.
    Set ``NAPARI_SAM2_ALLOW_TRITON=1`` to opt out.  Returns True when triton is blocked.
    """
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return False
    if "triton" in sys.modules:
        return sys.modules["triton"] is None
    if not mesa_llvm_loaded(maps):
        return False
    sys.modules["triton"] = None
    log.info(
        "Mesa's LLVM OpenGL is loaded: triton is disabled in this process to avoid a crash "
        "(set %s=1 to allow it).",
        OPT_OUT,
    )
    return True
