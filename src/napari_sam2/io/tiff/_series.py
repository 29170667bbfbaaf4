"""Private: what one image series of a TIFF holds (:class:`TiffInfo`), and which series
of a file are images worth opening.

A TIFF file can hold several *series* (tifffile's name for one image: several OME
``Image`` elements, several arrays written one after the other, the baseline, label
and macro images of a slide scan). A series can itself be a *pyramid*: the same image
at several resolutions (OME/bioformats SubIFDs, slide levels), tifffile's
``series.levels``, full resolution first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..errors import TiffReadError
from ..provenance import ProvenanceError, normalise_provenance
from ..suffixes import stem
from . import _tiffmeta as meta

_LABELS_SUFFIXES = ("_labels", "_label")

# Names that tifffile (SVS, NDPI, ...) and bioformats give to the side images of slide
# scans: the slide label photo, the macro/overview camera image, thumbnails.
_SIDE_IMAGE_NAME = re.compile(
    r"^\s*(thumbnail|macro|label|slide ?label|overview|map)( ?image)?\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class TiffInfo:
    """What the reader learned about one image series of a TIFF file, besides its pixels.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    axes : str
        One letter per array axis, e.g. ``"ZCYX"`` (tifffile axis codes).
    shape : tuple of int
        Array shape (of the level returned, see ``level``).
    dtype : numpy.dtype
        Pixel type.
    scale : tuple of float
        Pixel size per axis (1.0 where unknown, and for C/S), for the level returned:
        a level downsampled 4x in Y and X has 4x the Y/X pixel size of level 0.
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
    series : int
        Index of the series in the file (tifffile ``TiffFile.series``).
    series_name : str
        Its name (OME ``Image`` name, tifffile's ``Baseline``/``Macro``..., or ``""``).
    series_count : int
        Number of series in the file.
    level : int
        Pyramid level of the returned array (0 = full resolution).
    level_shapes : tuple of tuple of int
        Shapes of every pyramid level of the series, full resolution first; one entry
        for a plain (non-pyramidal) image.
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
    series: int = 0
    series_name: str = ""
    series_count: int = 1
    level: int = 0
    level_shapes: tuple = ()
    extra: dict = field(default_factory=dict)

    @property
    def is_labels(self) -> bool:
        """True for labels TIFFs: ours, or integer ``*_labels.tif`` single-channel files."""
        if self.record is not None:
            return True
        return (
            np.issubdtype(self.dtype, np.integer)
            and stem(self.path).lower().endswith(_LABELS_SUFFIXES)
            and "C" not in self.axes
            and "S" not in self.axes
        )

    @property
    def is_pyramid(self) -> bool:
        """True when the series stores more than one resolution level."""
        return len(self.level_shapes) > 1


def _yx_pixels(series: tifffile.TiffPageSeries) -> int:
    sizes = dict(zip(series.axes, series.shape, strict=True))
    return int(sizes.get("Y", 1)) * int(sizes.get("X", 1))


def is_side_image(series: tifffile.TiffPageSeries, largest_yx: int) -> bool:
    """True for a slide's thumbnail, macro or label image.

    Clearly so only: the series is *named* like one (``Thumbnail``, ``Macro``,
    ``Label``, ``Overview``, ``Map``, optionally followed by ``image``, any case) *and*
    has fewer Y*X pixels than the largest series of the file.
    """
    return bool(_SIDE_IMAGE_NAME.match(series.name or "")) and _yx_pixels(series) < largest_yx


def image_series(tif: tifffile.TiffFile) -> list[int]:
    """Indices of the series to open as layers: all but slide side images."""
    largest = max((_yx_pixels(s) for s in tif.series), default=0)
    return [i for i, s in enumerate(tif.series) if not is_side_image(s, largest)]


def series_label(tif: tifffile.TiffFile, index: int) -> str:
    """Short name of a series for layer names: its name if unique in the file, else its index."""
    name = (tif.series[index].name or "").strip()
    names = [(s.name or "").strip() for s in tif.series]
    return name if name and names.count(name) == 1 else f"series {index}"


def read_info(
    tif: tifffile.TiffFile, path: Path, lazy: bool, index: int = 0, level: int = 0
) -> TiffInfo:
    """Axes, scale, units, channels and labels record of series ``index`` at ``level``."""
    series = tif.series[index]
    levels = series.levels
    axes, shape = series.axes, tuple(levels[level].shape)
    page = series.keyframe
    sizes: dict[str, tuple[float, str]] = {}
    channel_names = ranges = record = None
    kind = "tiff"
    if tif.is_ome:
        kind = "ome"
        yx = dict(zip(axes, series.shape, strict=True))
        ome = meta.parse_ome(
            tif.ome_metadata or "",
            index,
            name=series.name,
            size_yx=(yx.get("Y", 1), yx.get("X", 1)),
        )
        sizes = ome["sizes"]
        record = ome["record"] if len(tif.series) == 1 else None
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
        if tif.is_shaped and tif.shaped_metadata and index < len(tif.shaped_metadata):
            kind = "shaped"
            record = meta.record_from_text(tif.shaped_metadata[index].get(meta.RECORD_KEY))
        sizes = meta.pixel_size_plain(page)
    if "X" in sizes and "Y" not in sizes:
        sizes["Y"] = sizes["X"]
    scale = tuple(float(sizes[a][0]) if a in sizes else 1.0 for a in axes)
    units = tuple(
        meta.normalise_unit(sizes[a][1]) or "pixel" if a in sizes else "pixel" for a in axes
    )
    if record is not None:
        record = checked_record(record, axes, path)
        scale = tuple(record["scale"])
        units = tuple(record["units"])
    if level:
        # a coarser level: the pixel size grows by the downsampling factor
        full = series.shape
        scale = tuple(
            s * full[i] / shape[i] if a not in "CS" and shape[i] else s
            for i, (a, s) in enumerate(zip(axes, scale, strict=True))
        )
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
        series=index,
        series_name=series.name or "",
        series_count=len(tif.series),
        level=level,
        level_shapes=tuple(tuple(lv.shape) for lv in levels),
    )


def checked_record(record: dict, axes: str, path: Path) -> dict:
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


def check_complete(tif: tifffile.TiffFile, path: Path, index: int = 0) -> None:
    """Raise if the pixel data of any level of series ``index`` extend past the file's end."""
    size = path.stat().st_size
    for series in tif.series[index].levels:
        if series.dataoffset is not None:
            if series.dataoffset + series.nbytes > size:
                raise TiffReadError(
                    f"{path.name} is truncated: pixel data end at byte "
                    f"{series.dataoffset + series.nbytes}, file has {size} bytes"
                )
            continue
        for page in (series.keyframe, series.pages[-1] if len(series.pages) else None):
            if page is None:
                continue
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                if offset + count > size:
                    raise TiffReadError(
                        f"{path.name} is truncated: a strip/tile ends at byte "
                        f"{offset + count}, file has {size} bytes"
                    )
