"""The simulated annotator's geometry: mask IoU, the deepest pixel of a region, and the
corrective click an annotator gives next (centre of the largest error region)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0.0 when both are empty)."""
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 0.0


def interior_point(region: np.ndarray) -> tuple[int, int]:
    """The pixel of ``region`` farthest from its boundary (first in row-major order)."""
    dist = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(r), int(c)


def corrective_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], bool]:
    """Centre of the largest error region, and whether the click is positive.

    The largest connected component of the false negatives (``gt & ~pred``) and of the false
    positives (``pred & ~gt``) is chosen (a false negative wins a tie).
    """
    best, best_size, positive = None, 0, True
    for error, pos in ((gt & ~pred, True), (pred & ~gt, False)):
        lab, n = ndi.label(error)
        if not n:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        j = int(np.argmax(sizes))
        if sizes[j] > best_size:
            best, best_size, positive = lab == j + 1, int(sizes[j]), pos
    if best is None:
        raise ValueError("The prediction equals the ground truth: no error to correct.")
    return interior_point(best), positive
