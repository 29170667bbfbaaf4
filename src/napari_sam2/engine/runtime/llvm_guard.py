"""No triton beside Mesa's LLVM: a precaution for processes that show a napari viewer.

triton (imported by torchvision, which sam2 and transformers import) ships its own LLVM;
importing it after Mesa's LLVM-based OpenGL was loaded (a napari viewer on llvmpipe/xvfb,
some AMD/Intel drivers) crashes the process.  The dock widget calls
:func:`avoid_llvm_clash` when it is created, and model loading calls it before importing
sam2 or transformers, so scripted use in napari's console is covered too.  Standard
library only.
"""

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
    GL driver when its viewer is created; the dock widget calls this when it is created,
    and model loading (sam2 and transformers backends) before importing them.  Only when a
    Mesa LLVM library is mapped is ``sys.modules["triton"]`` set to None (torch then treats
    triton as not installed; only the opt-in ``compile_encoder`` on a GPU would need it).
    A triton already imported is left alone.
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
