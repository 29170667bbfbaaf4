"""Process settings that must be made before torch is imported: applied at model load.

**Huge pages for torch's CPU buffers.**  A SAM 2 encode allocates and frees about 1 GB
of activations (tiny, 1024 px input); with 4 KiB pages every one of them is page-faulted
in again on each encode (~300 000 faults).  torch's own ``THP_MEM_ALLOC_ENABLE=1`` aligns
buffers of 2 MB and more to 2 MB and asks the kernel for transparent huge pages, which
cuts the faults ~10-20× and the encode's CPU time by ~8 % (docs/performance.md,
"Allocator").  The values computed are unchanged.  torch reads the variable once, when it
is imported, so :func:`prefer_huge_pages` runs when a SAM 2 model is loaded
(:func:`~napari_sam2.engine.model.load.load_sam2`, the transformers loader and
``Segmenter(...)``), before anything imports torch, and does nothing when torch is
already imported, when the variable is already set (any value), or when
``NAPARI_SAM2_HUGE_PAGES=0``.  Linux only (elsewhere torch ignores it).

Why at model load and not at ``import napari_sam2``: importing a package must not change
the process (napari and every other torch user in it would inherit the setting without
asking for it); loading a SAM 2 model is the user's request to run torch for us.  It is
still process-wide once set (torch has one allocator): a script that wants it for torch
imported earlier calls :func:`prefer_huge_pages` itself before importing torch, or sets
``THP_MEM_ALLOC_ENABLE=1``.
"""

from __future__ import annotations

import os
import sys

TORCH_VARIABLE = "THP_MEM_ALLOC_ENABLE"
OPT_OUT_VARIABLE = "NAPARI_SAM2_HUGE_PAGES"


def prefer_huge_pages(environ=None, modules=None, platform: str | None = None) -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` for torch if nothing decided otherwise; True if set."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or "torch" in modules:
        return False
    if TORCH_VARIABLE in environ or environ.get(OPT_OUT_VARIABLE, "1").strip() == "0":
        return False
    environ[TORCH_VARIABLE] = "1"
    return True
