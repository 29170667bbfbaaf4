"""Private: lazy arrays over tifffile's zarr view, and multiscale (pyramid) layers.

A pyramid opens in napari as one multiscale layer (``data`` = list of arrays, full
resolution first) when its full-resolution level is at least
:data:`MULTISCALE_MIN_SIZE` pixels high or wide. Smaller pyramids open as a plain
layer of their full-resolution level: it fits in memory and on the GPU, and a plain
layer keeps every napari feature (3D rendering at full resolution, exact
contrast limits, plugins that expect one array).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._series import TiffInfo

MULTISCALE_MIN_SIZE = 2048
"""Pyramids whose full-resolution Y or X size reaches this open as multiscale layers."""


def lazy_array(path: Path, series: int = 0, level: int = 0) -> Any:
    """Dask array over one level of one series; chunks follow the file's planes/tiles."""
    import dask.array as da
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, series=series, level=level)
    return da.from_zarr(zarr.open(store, mode="r"))


def wants_multiscale(info: TiffInfo, multiscale: bool | None = None) -> bool:
    """Whether series ``info`` should become a multiscale layer.

    ``multiscale=None`` decides by size (see :data:`MULTISCALE_MIN_SIZE`); True asks
    for a multiscale layer whenever the series has several levels; False never.
    """
    if not info.is_pyramid or multiscale is False:
        return False
    if multiscale:
        return True
    full = dict(zip(info.axes, info.level_shapes[0], strict=True))
    return max(full.get("Y", 0), full.get("X", 0)) >= MULTISCALE_MIN_SIZE


def lazy_levels(info: TiffInfo) -> list:
    """Every level of the series ``info`` describes, lazily, full resolution first."""
    return [lazy_array(info.path, info.series, level) for level in range(len(info.level_shapes))]
