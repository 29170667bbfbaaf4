"""Weight-free automatic instances: Otsu threshold, then a watershed of the distance
transform seeded by its h-maxima (splits touching bright blobs such as nuclei)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from .params import EverythingParams
from .postprocess import filter_areas, relabel_raster


def classical_instances(
    smooth: np.ndarray, params: EverythingParams = EverythingParams(), *, threshold=None
):
    """Weight-free instances of a smoothed, normalised grey plane (float, [0, 1]).

    Otsu threshold; the objects are the side of it that covers less of the plane (bright
    nuclei on a dark background, or the reverse); holes filled; touching objects split by
    a watershed of the distance transform seeded by its ``split_h``-maxima.  Returns
    ``(labels, scores)``: int32 labels 1..N (raster order) and one score (1.0) per object.
    ``threshold``: ``(t, bright)`` to use instead of the plane's own Otsu threshold and
    polarity (tiles of one plane share the whole plane's).
    """
    s = np.asarray(smooth, dtype=np.float32)
    finite = s[np.isfinite(s)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.zeros(s.shape, np.int32), np.zeros(0, np.float32)
    if threshold is None:
        t = float(threshold_otsu(finite))
        fg = s > t
        if fg.mean() > 0.5:  # dark objects on a bright background
            fg = ~fg
    else:
        t, bright = threshold
        fg = s > t if bright else s <= t
    fg = ndi.binary_fill_holes(fg)
    dist = ndi.distance_transform_edt(fg)
    dist = gaussian(dist, 1.0, preserve_range=True)
    markers, n = ndi.label(h_maxima(dist, params.split_h) & fg)
    if n == 0:
        return np.zeros(s.shape, np.int32), np.zeros(0, np.float32)
    lab = watershed(-dist, markers, mask=fg).astype(np.int32)
    lab = filter_areas(lab, params.min_area, params.max_area)
    lab = relabel_raster(lab)
    return lab, np.ones(int(lab.max()), np.float32)
