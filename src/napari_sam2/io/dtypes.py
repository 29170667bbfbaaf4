"""The one rule for the dtype of a written labels image (a leaf module)."""

from __future__ import annotations

import numpy as np

from .errors import LabelsWriteError

_UINT_TYPES = (np.uint8, np.uint16, np.uint32)


def labels_dtype(labels: np.ndarray, smallest: type = np.uint8) -> np.dtype:
    """The smallest unsigned dtype, not below ``smallest``, that holds every label ID.

    The TIFF writer asks for at least ``uint16`` (what Fiji and most TIFF label readers
    expect); the NIfTI writer for at least ``uint8`` (ITK-SNAP and 3D Slicer read it).
    Booleans and empty arrays get ``smallest``.

    Raises
    ------
    LabelsWriteError
        Non-integer labels, negative IDs, or an ID above the ``uint32`` range.
    """
    if labels.dtype == np.bool_ or labels.size == 0:
        if labels.dtype != np.bool_ and not np.issubdtype(labels.dtype, np.integer):
            raise LabelsWriteError(f"labels must be an integer array, not {labels.dtype}")
        return np.dtype(smallest)
    if not np.issubdtype(labels.dtype, np.integer):
        raise LabelsWriteError(f"labels must be an integer array, not {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise LabelsWriteError(f"labels contain negative IDs (minimum {low})")
    for dtype in _UINT_TYPES:
        if np.dtype(dtype).itemsize >= np.dtype(smallest).itemsize and high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise LabelsWriteError(f"label ID {high} does not fit in uint32")
