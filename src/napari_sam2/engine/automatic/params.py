"""Settings of automatic segmentation, and what a backend is given to segment a region.

A leaf module (numpy and the standard library only): the backends' automatic capability
(``automatic_instances``, see :class:`~napari_sam2.engine.backends.base.Predictor`) imports it
without importing the rest of :mod:`napari_sam2.engine.automatic`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError

ALL_PLANES = "all"
CANCELLED = "Segment everything cancelled."


@dataclass(frozen=True)
class EverythingParams:
    """Settings of automatic segmentation (areas in pixels; see :func:`area_in_pixels`).

    ``points_per_side`` … ``box_nms_thresh`` are SAM 2's (same meaning as in
    ``SAM2AutomaticMaskGenerator``); ``sigma`` and ``split_h`` the classical backend's
    (smoothing and how deep a dip between two touching blobs must be to split them, in
    pixels of the distance transform).  ``hole_area``: holes of an object up to this area
    are filled (0: none).  Planes larger than ``tile_size`` (default: SAM 2's input
    size, 2048 px for the classical backend) are processed in tiles overlapping by
    ``tile_overlap`` px (see :mod:`.tiling`); the overlap should exceed the objects' size.
    """

    points_per_side: int = 32
    points_per_batch: int = 256
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_area: float = 0.0
    max_area: float | None = None
    hole_area: float = 0.0
    sigma: float = 1.0
    split_h: float = 0.7
    tile_size: int | None = None
    tile_overlap: int = 128


def area_in_pixels(area, pixel_size=None) -> float | None:
    """An area given in physical units² → pixels, using ``pixel_size`` (row, col) per pixel.

    ``None`` stays None; without ``pixel_size`` the area is already in pixels.
    """
    if area is None:
        return None
    area = float(area)
    if area < 0:
        raise ValueError(f"Areas must be >= 0, got {area}.")
    if pixel_size is None:
        return area
    sy, sx = (abs(float(v)) for v in pixel_size)
    if sy <= 0 or sx <= 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}.")
    return area / (sy * sx)


@dataclass
class AutomaticRegion:
    """A plane, or a tile of a large plane, for a backend's ``automatic_instances``.

    Each input is a callable so that a backend reads only what it needs: ``embedding()``
    the region's (cached) embedding; ``gray()`` its normalised grey pixels (float, [0, 1]);
    ``threshold()`` the whole plane's ``(t, bright)`` when the region is a tile (tiles of
    one plane share it), else None.  ``edge_box`` (tiles only): which sides (left, top,
    right, bottom) are cut edges inside the larger plane; None for a whole plane.
    """

    embedding: Callable[[], Any]
    gray: Callable[[], np.ndarray]
    threshold: Callable[[], tuple[float, bool]] | None = None
    edge_box: tuple[bool, bool, bool, bool] | None = None

    @property
    def is_tile(self) -> bool:
        return self.edge_box is not None


def automatic_instances(
    backend, region: AutomaticRegion, params, *, cancel=None, progress=None, missing: str
):
    """``backend.automatic_instances(region, params, ...)``: the instance labels (int32,
    1..N) of the region; :class:`ModelError` (``missing``) for a backend that declares no
    automatic mode (the capability is optional in the predictor protocol)."""
    run = getattr(backend, "automatic_instances", None)
    if run is None:
        raise ModelError(missing)
    return run(region, params, cancel=cancel, progress=progress)
