"""Read microscopy TIFF files (OME-TIFF, ImageJ hyperstacks, plain TIFF) into napari.

The npe2 reader contribution is :func:`get_reader`. Axes come from the OME or
ImageJ metadata through tifffile; channels (``C``) become one image layer each;
physical pixel sizes become ``scale`` with ``units``; ``axis_labels`` are set.
Files larger than :data:`LAZY_THRESHOLD_BYTES` open lazily (tifffile ``aszarr``
wrapped in a dask array), so only the planes being viewed are read.

Pyramids (OME SubIFDs, tifffile series with levels) whose full-resolution level
reaches :data:`MULTISCALE_MIN_SIZE` pixels open as multiscale layers (a list of
lazy levels, full resolution first); smaller ones as a plain layer of level 0.
napari reads every image series of a file (slide thumbnail/macro/label images
excepted); the scripted :func:`open_tiff`/:func:`read_tiff` read ``series=0`` unless
told otherwise, and :func:`open_tiff` returns one level (``level=0`` by default).

Labels TIFFs written by :mod:`napari_sam2.io.tiff.writer` come back as a Labels layer
with their provenance in ``layer.metadata["napari_sam2"]``. Integer TIFFs whose
name ends in ``_labels`` (a common convention for ground truth) are also opened
as Labels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from ..errors import TiffReadError
from ._layers import image_layers, labels_layer
from ._pyramid import MULTISCALE_MIN_SIZE, lazy_array, wants_multiscale
from ._series import (
    TiffInfo,
    check_complete,
    image_series,
    read_info,
    series_label,
    stem,
)

__all__ = [
    "LAZY_THRESHOLD_BYTES",
    "MULTISCALE_MIN_SIZE",
    "TiffInfo",
    "TiffReadError",
    "get_reader",
    "open_tiff",
    "read_tiff",
]

LAZY_THRESHOLD_BYTES = 256 * 2**20
"""Files whose pixel data exceed this many bytes open lazily by default (256 MiB)."""

TIFF_SUFFIXES = (".tif", ".tiff")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _has_tiff_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def get_reader(path: str | list[str]):
    """npe2 reader contribution: return a reader for TIFF files, else None.

    Parameters
    ----------
    path : str or list of str
        What the user opened. Lists (stacks of files) and directories are left to
        other readers.

    Returns
    -------
    callable or None
        ``reader(path) -> list of LayerData tuples`` when ``path`` is an existing
        file with a TIFF extension *and* TIFF magic bytes; None otherwise (a
        non-TIFF file named ``.tif`` is left for other readers, which napari then
        reports as "no reader found").
    """
    if isinstance(path, (list, tuple)):
        return None
    candidate = Path(os.fspath(path))
    if not candidate.name.lower().endswith(TIFF_SUFFIXES) or not candidate.is_file():
        return None
    if not _has_tiff_magic(candidate):
        return None
    return partial(_napari_reader)


def _napari_reader(path: str) -> list[tuple]:
    return read_tiff(path, series="all")


@contextmanager
def _tifffile_errors():
    """Collect ERROR messages that tifffile logs instead of raising."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect(level=logging.ERROR)
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _checked_path(path: str | os.PathLike) -> Path:
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if not _has_tiff_magic(path):
        raise TiffReadError(f"{path.name} is not a TIFF file (no TIFF header)")
    return path


@contextmanager
def _opened(path: Path) -> Iterator[tifffile.TiffFile]:
    """Open ``path`` with tifffile; every failure becomes a TiffReadError naming the file."""
    try:
        with _tifffile_errors() as errors, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise TiffReadError(
                    f"{path.name} contains no readable image (empty or truncated file)"
                )
            yield tif
            if errors:
                raise TiffReadError(f"{path.name} is corrupt: {'; '.join(errors)}")
    except TiffReadError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, EOFError) as exc:
        raise TiffReadError(f"cannot read {path.name}: {exc or type(exc).__name__}") from exc


def _index(value: int, count: int, what: str, path: Path) -> int:
    """Python-style index (negative counts from the end) checked against ``count``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if not -count <= value < count:
        plural = what if what.endswith("s") else f"{what}s"
        raise TiffReadError(f"{path.name} has {count} {plural}; {what}={value} does not exist")
    return int(value) % count


def _open(
    path: Path,
    *,
    lazy: bool | None,
    lazy_threshold: int,
    series: int,
    level: int,
    multiscale: bool | None,
) -> tuple[Any, TiffInfo]:
    """open_tiff's body. Unless ``multiscale`` is False, a pyramid that
    :func:`wants_multiscale` comes back as a list of lazy levels (``info.level`` 0)."""
    with _opened(path) as tif:
        index = _index(series, len(tif.series), "series", path)
        levels = tif.series[index].levels
        level = _index(level, len(levels), "level", path)
        info = read_info(tif, path, True, index, level)
        pyramid = (
            multiscale is not False
            and level == 0
            and not info.is_labels
            and wants_multiscale(info, multiscale)
        )
        nbytes = levels[level].nbytes
        use_lazy = pyramid or (nbytes > lazy_threshold if lazy is None else bool(lazy))
        info = replace(info, lazy=use_lazy)
        check_complete(tif, path, index)
        data = None if use_lazy else levels[level].asarray()
    try:
        if pyramid:
            data = [lazy_array(path, index, i) for i in range(len(levels))]
        elif use_lazy:
            data = lazy_array(path, index, level)
    except (tifffile.TiffFileError, ValueError, OSError, KeyError) as exc:
        raise TiffReadError(f"cannot read {path.name}: {exc or type(exc).__name__}") from exc
    return data, info


def open_tiff(
    path: str | os.PathLike,
    *,
    lazy: bool | None = None,
    lazy_threshold: int = LAZY_THRESHOLD_BYTES,
    series: int = 0,
    level: int = 0,
) -> tuple[Any, TiffInfo]:
    """Open one image of a TIFF file as an array plus its metadata, without napari.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF, OME-TIFF or ImageJ hyperstack file.
    lazy : bool, optional
        True returns a dask array backed by tifffile's zarr store (planes are read
        on demand); False reads everything into memory; None (default) decides by
        size: lazy when the pixel data exceed ``lazy_threshold`` bytes.
    lazy_threshold : int
        Size in bytes above which ``lazy=None`` opens lazily.
    series : int
        Which image series of the file (default 0, the first); negative values count
        from the end. ``info.series_count`` says how many there are.
    level : int
        Which pyramid level of the series: 0 (default) is full resolution, 1 the
        next coarser one, -1 the smallest. ``info.level_shapes`` lists every level;
        plain images have one. ``info.scale`` is that level's pixel size.

    Returns
    -------
    data : numpy.ndarray or dask.array.Array
        One array, in ``info.axes`` order: the chosen level of the chosen series
        (never a list, even for a pyramid; :func:`read_tiff` builds multiscale layers).
    info : TiffInfo
        Axes, scale, units, channel names, series and levels, and our labels record,
        if any.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TiffReadError
        If the file is not a TIFF, or is corrupt or truncated, or has no such series
        or level. The message names the file.
    """
    return _open(
        _checked_path(path),
        lazy=lazy,
        lazy_threshold=lazy_threshold,
        series=series,
        level=level,
        multiscale=False,
    )


def read_tiff(
    path: str | os.PathLike,
    *,
    lazy: bool | None = None,
    lazy_threshold: int = LAZY_THRESHOLD_BYTES,
    series: int | Literal["all"] = 0,
    multiscale: bool | None = None,
) -> list[tuple]:
    """Read a TIFF file into napari LayerData tuples.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF, OME-TIFF or ImageJ hyperstack file.
    lazy, lazy_threshold
        See :func:`open_tiff`. Labels are read eagerly unless ``lazy=True``, so
        they can be edited.
    series : int or "all"
        Which image series to read: an index (default 0, the first), or ``"all"``
        for every series except the thumbnail/macro/label images of slide scans
        (what napari's *File > Open* does). When more than one series is read, layer
        names end in `` [<series name>]`` (or `` [series <i>]`` where the name is empty
        or not unique); a single series keeps the plain names.
    multiscale : bool, optional
        For pyramids. None (default): one multiscale layer per channel when the
        full-resolution level is at least :data:`MULTISCALE_MIN_SIZE` pixels high or
        wide, else a plain layer of the full-resolution level. True: multiscale for
        every pyramid. False: full-resolution level only. Labels always use level 0.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)`` tuples: one image layer per channel, or a
        single labels layer for labels TIFFs. For a multiscale layer ``data`` is a
        list of lazy (dask) arrays, full resolution first, ``kwargs["multiscale"]``
        is True and ``kwargs["scale"]`` is the full-resolution pixel size.

    Raises
    ------
    TiffReadError
        If the file is not a readable TIFF, or has no such series.
    """
    if isinstance(series, str) and series != "all":
        raise ValueError(f"series must be an integer or 'all', not {series!r}")
    checked = _checked_path(path)
    with _opened(checked) as tif:
        if series == "all":
            indices = image_series(tif)
        else:
            indices = [_index(series, len(tif.series), "series", checked)]
        labels = {i: series_label(tif, i) for i in indices}
    layers: list[tuple] = []
    for index in indices:
        data, info = _open(
            checked,
            lazy=lazy,
            lazy_threshold=lazy_threshold,
            series=index,
            level=0,
            multiscale=multiscale,
        )
        suffix = f" [{labels[index]}]" if len(indices) > 1 else ""
        name = stem(info.path)
        if info.is_labels:
            if info.lazy and lazy is None:
                data = np.asarray(data)
            layers.append(labels_layer(data, info, name + suffix))
        else:
            layers.extend(
                image_layers(data, info, name, suffix=suffix, multiscale=isinstance(data, list))
            )
    return layers
