"""Process settings that must be made before torch is imported.

**Huge pages for torch's CPU buffers.**  A SAM 2 encode allocates and frees about 1 GB
of activations (tiny, 1024 px input); with 4 KiB pages every one of them is page-faulted
in again on each encode (~300 000 faults).  torch's own ``THP_MEM_ALLOC_ENABLE=1`` aligns
buffers of 2 MB and more to 2 MB and asks the kernel for transparent huge pages, which
cuts the faults ~10-20× and the encode's CPU time by ~8 % (docs/performance.md,
"Allocator").  The values computed are unchanged.  torch reads the variable once, when it
is imported, so :func:`prefer_huge_pages` runs when ``napari_sam2`` is imported and does
nothing when torch is already imported, when the variable is already set (any value), or
when ``NAPARI_SAM2_HUGE_PAGES=0``.  Linux only (elsewhere torch ignores it).
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
