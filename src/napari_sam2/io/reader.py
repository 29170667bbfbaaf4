"""Read microscopy TIFF files (OME-TIFF, ImageJ hyperstacks, plain TIFF) into napari.

The npe2 reader contribution is :func:`get_reader`. Axes come from the OME or
ImageJ metadata through tifffile; channels (``C``) become one image layer each;
physical pixel sizes become ``scale`` with ``units``; ``axis_labels`` are set.
Files larger than :data:`LAZY_THRESHOLD_BYTES` open lazily (tifffile ``aszarr``
wrapped in a dask array), so only the planes being viewed are read.

Labels TIFFs written by :mod:`napari_sam2.io.writer` come back as a Labels layer
with their provenance in ``layer.metadata["napari_sam2"]``. Integer TIFFs whose
name ends in ``_labels`` (a common convention for ground truth) are also opened
as Labels.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from . import _tiffmeta as meta
from ._layers import image_layers, labels_layer
from .provenance import ProvenanceError, normalise_provenance

__all__ = [
    "LAZY_THRESHOLD_BYTES",
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
_LABELS_SUFFIXES = ("_labels", "_label")


class TiffReadError(ValueError):
    """A file that looks like a TIFF could not be read (corrupt, truncated, unsupported)."""


@dataclass(frozen=True)
class TiffInfo:
    """What the reader learned about a TIFF file, besides its pixels.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    axes : str
        One letter per array axis, e.g. ``"ZCYX"`` (tifffile axis codes).
    shape : tuple of int
        Array shape.
    dtype : numpy.dtype
        Pixel type.
    scale : tuple of float
        Pixel size per axis (1.0 where unknown, and for C/S).
    units : tuple of str
        Unit per axis (``"micrometer"``, ``"second"``, ``"pixel"`` ...).
    channel_names : tuple of str or None
        Channel names from OME metadata, one per C entry, where present.
    ranges : tuple of (float, float) or None
        ImageJ display ranges per channel, where present.
    kind : str
        ``"ome"``, ``"imagej"``, ``"shaped"`` or ``"tiff"``.
    record : dict or None
        The napari-sam2 labels record, for labels TIFFs we wrote.
    lazy : bool
        Whether the array returned with this info is a dask array.
    """

    path: Path
    axes: str
    shape: tuple
    dtype: np.dtype
    scale: tuple
    units: tuple
    channel_names: tuple | None = None
    ranges: tuple | None = None
    kind: str = "tiff"
    record: dict | None = None
    lazy: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def is_labels(self) -> bool:
        """True for labels TIFFs: ours, or integer ``*_labels.tif`` single-channel files."""
        if self.record is not None:
            return True
        stem = _stem(self.path).lower()
        return (
            np.issubdtype(self.dtype, np.integer)
            and stem.endswith(_LABELS_SUFFIXES)
            and "C" not in self.axes
            and "S" not in self.axes
        )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


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
    return read_tiff(path)


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


def _read_info(tif: tifffile.TiffFile, path: Path, lazy: bool) -> TiffInfo:
    series = tif.series[0]
    axes, shape = series.axes, tuple(series.shape)
    page = series.keyframe
    sizes: dict[str, tuple[float, str]] = {}
    channel_names = ranges = record = None
    kind = "tiff"
    if tif.is_ome:
        kind = "ome"
        ome = meta.parse_ome(tif.ome_metadata or "")
        sizes = ome["sizes"]
        record = ome["record"]
        if any(ome["channels"]) and len(ome["channels"]) == dict(
            zip(axes, shape, strict=True)
        ).get("C"):
            channel_names = tuple(name or f"c{i}" for i, name in enumerate(ome["channels"]))
    elif tif.is_imagej:
        kind = "imagej"
        sizes = meta.pixel_size_imagej(tif.imagej_metadata or {}, page)
        ij = tif.imagej_metadata or {}
        record = meta.record_from_text(ij.get("Info"))
        raw = ij.get("Ranges")
        if raw is not None and len(raw) % 2 == 0:
            ranges = tuple((float(raw[i]), float(raw[i + 1])) for i in range(0, len(raw), 2))
    else:
        if tif.is_shaped and tif.shaped_metadata:
            kind = "shaped"
            record = meta.record_from_text(tif.shaped_metadata[0].get(meta.RECORD_KEY))
        sizes = meta.pixel_size_plain(page)
    if "X" in sizes and "Y" not in sizes:
        sizes["Y"] = sizes["X"]
    scale = tuple(float(sizes[a][0]) if a in sizes else 1.0 for a in axes)
    units = tuple(
        meta.normalise_unit(sizes[a][1]) or "pixel" if a in sizes else "pixel" for a in axes
    )
    if record is not None:
        record = _checked_record(record, axes, path)
        scale = tuple(record["scale"])
        units = tuple(record["units"])
    return TiffInfo(
        path=path,
        axes=axes,
        shape=shape,
        dtype=np.dtype(series.dtype),
        scale=scale,
        units=units,
        channel_names=channel_names,
        ranges=ranges,
        kind=kind,
        record=record,
        lazy=lazy,
    )


def _checked_record(record: dict, axes: str, path: Path) -> dict:
    """Validate our labels record against the file; normalise its provenance."""
    ndim = len(axes)
    if record.get("axes") != axes:
        raise TiffReadError(
            f"{path.name}: napari-sam2 labels record has axes {record.get('axes')!r} "
            f"but the image has {axes!r}"
        )
    for key in ("scale", "units", "translate"):
        value = record.get(key)
        if not isinstance(value, list) or len(value) != ndim:
            raise TiffReadError(f"{path.name}: napari-sam2 labels record has a bad {key!r}")
    provenance = record.get("provenance")
    if provenance is not None:
        try:
            provenance = normalise_provenance(provenance)
        except ProvenanceError as exc:
            raise TiffReadError(f"{path.name}: invalid provenance in labels file: {exc}") from exc
    return {**record, "provenance": provenance}


def _check_complete(tif: tifffile.TiffFile, path: Path) -> None:
    """Raise if the series' pixel data extend past the end of the file."""
    size = path.stat().st_size
    series = tif.series[0]
    if series.dataoffset is not None:
        if series.dataoffset + series.nbytes > size:
            raise TiffReadError(
                f"{path.name} is truncated: pixel data end at byte "
                f"{series.dataoffset + series.nbytes}, file has {size} bytes"
            )
        return
    for page in (series.keyframe, series.pages[-1] if len(series.pages) else None):
        if page is None:
            continue
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            if offset + count > size:
                raise TiffReadError(
                    f"{path.name} is truncated: a strip/tile ends at byte {offset + count}, "
                    f"file has {size} bytes"
                )


def _lazy_array(path: Path):
    import dask.array as da
    import zarr

    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    return da.from_zarr(zarr.open(store, mode="r"))


def open_tiff(
    path: str | os.PathLike,
    *,
    lazy: bool | None = None,
    lazy_threshold: int = LAZY_THRESHOLD_BYTES,
) -> tuple[Any, TiffInfo]:
    """Open a TIFF file as an array plus its metadata, without napari.

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

    Returns
    -------
    data : numpy.ndarray or dask.array.Array
        The first image series, in ``info.axes`` order.
    info : TiffInfo
        Axes, scale, units, channel names and our labels record, if any.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TiffReadError
        If the file is not a TIFF, or is corrupt or truncated. The message names
        the file.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if not _has_tiff_magic(path):
        raise TiffReadError(f"{path.name} is not a TIFF file (no TIFF header)")
    try:
        with _tifffile_errors() as errors, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise TiffReadError(
                    f"{path.name} contains no readable image (empty or truncated file)"
                )
            nbytes = tif.series[0].nbytes
            use_lazy = nbytes > lazy_threshold if lazy is None else bool(lazy)
            info = _read_info(tif, path, use_lazy)
            _check_complete(tif, path)
            data = None if use_lazy else tif.series[0].asarray()
            if errors:
                raise TiffReadError(f"{path.name} is corrupt: {'; '.join(errors)}")
        if use_lazy:
            data = _lazy_array(path)
    except TiffReadError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, EOFError) as exc:
        raise TiffReadError(f"cannot read {path.name}: {exc or type(exc).__name__}") from exc
    return data, info


def read_tiff(
    path: str | os.PathLike,
    *,
    lazy: bool | None = None,
    lazy_threshold: int = LAZY_THRESHOLD_BYTES,
) -> list[tuple]:
    """Read a TIFF file into napari LayerData tuples.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF, OME-TIFF or ImageJ hyperstack file.
    lazy, lazy_threshold
        See :func:`open_tiff`. Labels are read eagerly unless ``lazy=True``, so
        they can be edited.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)`` tuples: one image layer per channel, or a
        single labels layer for labels TIFFs.

    Raises
    ------
    TiffReadError
        If the file is not a readable TIFF.
    """
    data, info = open_tiff(path, lazy=lazy, lazy_threshold=lazy_threshold)
    name = _stem(info.path)
    if info.is_labels:
        if info.lazy and lazy is None:
            data = np.asarray(data)
        return [labels_layer(data, info, name)]
    return image_layers(data, info, name)
