"""Window/level presets for CT and robust limits for MR and other images.

A *window* ``(width, level)`` is the radiologist's way of writing contrast limits:
``(level - width / 2, level + width / 2)``. Setting an image layer's
``contrast_limits`` is all that is needed: the segmenter reads the layer's contrast
limits (one code path for display and model input), so SAM sees exactly the window the
user looks at.

>>> window_limits(*CT_PRESETS["lung"])
(-1350.0, 150.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "CT_PRESETS",
    "FILE_WINDOW",
    "ROBUST",
    "file_windows",
    "looks_like_hu",
    "preset_limits",
    "preset_names",
    "robust_limits",
    "window_limits",
]

CT_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (400.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
}
"""CT presets as ``(width, level)`` in Hounsfield units."""

FILE_WINDOW = "file window"
"""Preset name prefix for the windows stored in a DICOM file (WindowCenter/Width)."""

ROBUST = "robust (0.5–99.5 %)"
"""Preset name for robust percentile limits (MR, PET, ultrasound, anything)."""

ROBUST_PERCENTILES = (0.5, 99.5)
_MAX_SAMPLES = 4_000_000


def window_limits(width: float, level: float) -> tuple[float, float]:
    """Contrast limits ``(low, high)`` of a window of ``width`` centred on ``level``.

    Raises
    ------
    ValueError
        If ``width`` is not positive and finite.
    """
    width, level = float(width), float(level)
    if not np.isfinite(width) or width <= 0 or not np.isfinite(level):
        raise ValueError(
            f"a window needs a positive width and a finite level, got {width}, {level}"
        )
    return (level - width / 2.0, level + width / 2.0)


def robust_limits(data: Any, percentiles: tuple[float, float] = ROBUST_PERCENTILES) -> list[float]:
    """Percentile limits over the whole volume (subsampled above 4 M values).

    Non-finite values are ignored; a constant image gets ``[v, v + 1]``.
    """
    values = np.asarray(data).ravel()
    if values.size > _MAX_SAMPLES:
        values = values[:: values.size // _MAX_SAMPLES + 1]
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return [0.0, 1.0]
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1.0
    return [low, high]


def file_windows(metadata: Mapping[str, Any] | None) -> list[tuple[str, tuple[float, float]]]:
    """The windows a DICOM file stores, from ``layer.metadata["medical"]["windows"]``.

    Returns ``[(name, (width, level)), ...]`` with names like ``"file window"`` or
    ``"file window: WINDOW1"`` (the file's WindowCenterWidthExplanation).
    """
    medical = (metadata or {}).get("medical") or {}
    out = []
    for item in medical.get("windows") or ():
        try:
            width, level = float(item["width"]), float(item["center"])
        except (KeyError, TypeError, ValueError):
            continue
        if width <= 0:
            continue
        label = str(item.get("explanation") or "").strip()
        out.append((f"{FILE_WINDOW}: {label}" if label else FILE_WINDOW, (width, level)))
    return out


def looks_like_hu(data: Any) -> bool:
    """Whether a volume without a modality (NIfTI) holds CT in Hounsfield units.

    Air around the body is about -1000 HU and fills far more than 1 % of a CT volume, soft
    tissue and bone are positive: the 1st percentile is at or below -900 and the maximum
    at least 100 (MR, PET and normalised images are never that negative). Subsampled above
    4 M values.
    """
    values = np.asarray(data).ravel()
    if values.size == 0 or values.dtype.kind not in "iuf":
        return False
    if values.size > _MAX_SAMPLES:
        values = values[:: values.size // _MAX_SAMPLES + 1]
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
        if values.size == 0:
            return False
    return float(np.percentile(values, 1)) <= -900.0 and float(values.max()) >= 100.0


def _is_ct(metadata: Mapping[str, Any] | None) -> bool:
    medical = (metadata or {}).get("medical") or {}
    return str(medical.get("modality", "")).upper() == "CT" or medical.get("units") == "HU"


def preset_names(metadata: Mapping[str, Any] | None) -> list[str]:
    """Preset names that make sense for a layer with this metadata.

    CT (``modality`` CT or ``units`` HU): the CT presets, the file's own windows, the
    robust percentiles. Others: the file's windows and the robust percentiles first, then
    the CT presets (for CT data opened from other formats, in HU).
    """
    own = [name for name, _ in file_windows(metadata)]
    if _is_ct(metadata):
        return [*CT_PRESETS, *own, ROBUST]
    return [*own, ROBUST, *CT_PRESETS]


def preset_limits(name: str, data: Any = None, metadata: Mapping[str, Any] | None = None):
    """Contrast limits of the preset ``name`` (see :func:`preset_names`).

    ``data`` is needed for :data:`ROBUST`, ``metadata`` for the file windows.

    Raises
    ------
    KeyError
        If ``name`` is not a known preset for this metadata.
    """
    if name in CT_PRESETS:
        return window_limits(*CT_PRESETS[name])
    for file_name, window in file_windows(metadata):
        if file_name == name:
            return window_limits(*window)
    if name == ROBUST:
        if data is None:
            raise ValueError("robust limits need the image data")
        return tuple(robust_limits(data))
    raise KeyError(f"unknown window preset {name!r}")
