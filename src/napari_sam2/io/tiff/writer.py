"""Write label images as TIFF with scale, units, axes and provenance.

* ``.tif`` / ``.tiff``: ImageJ hyperstack (opens calibrated in Fiji), zlib.
* ``.ome.tif`` / ``.ome.tiff``: OME-TIFF with ``PhysicalSize*`` (QuPath, Bio-Formats).
* Labels whose largest ID does not fit in uint16, or whose axes ImageJ cannot
  express, are written as a plain tifffile TIFF with a JSON description (uint32).

Every file carries a small JSON *labels record* (axes, exact scale, units,
translate, layer name, provenance) in the ImageJ ``Info`` property, an OME
``CommentAnnotation`` or tifffile's JSON description; :mod:`napari_sam2.io.tiff.reader`
uses it to restore the Labels layer and ``layer.metadata["napari_sam2"]``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..dtypes import labels_dtype
from ..errors import LabelsWriteError
from ..provenance import make_provenance, normalise_provenance
from . import _tiffmeta as meta

__all__ = [
    "LabelsWriteError",
    "load_labels",
    "save_labels",
    "write_labels",
    "write_labels_tiff",
]


def _is_ome(path: Path) -> bool:
    return path.name.lower().endswith((".ome.tif", ".ome.tiff"))


def _per_axis(value: Any, ndim: int, default: Any, what: str) -> list:
    if value is None:
        return [default] * ndim
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        return [value] * ndim
    items = list(value)
    if len(items) != ndim:
        raise ValueError(f"{what} has {len(items)} values for {ndim}D labels")
    return items


def _imagej_metadata(axes: str, scale: list, units: list, record_text: str) -> tuple:
    """ImageJ ``resolution`` and ``metadata`` for tifffile.imwrite."""
    info = dict(zip(axes, zip(scale, units, strict=True), strict=True))
    metadata: dict[str, Any] = {"axes": axes, "Info": record_text}
    spatial_unit = meta.imagej_unit(info.get("X", (1.0, "pixel"))[1])
    if spatial_unit and spatial_unit != "pixel":
        metadata["unit"] = spatial_unit
    if "Z" in info:
        metadata["spacing"] = float(info["Z"][0])
    if "T" in info and meta.normalise_unit(info["T"][1]) != "pixel":
        metadata["finterval"] = float(info["T"][0])
        metadata["tunit"] = meta.imagej_unit(info["T"][1])
    x = float(info.get("X", (1.0, ""))[0])
    y = float(info.get("Y", (x, ""))[0])
    return (1.0 / x, 1.0 / y), metadata


def _ome_metadata(axes: str, scale: list, units: list, record_text: str) -> dict:
    metadata: dict[str, Any] = {
        "axes": axes,
        "CommentAnnotation": {"Namespace": meta.OME_NAMESPACE, "Value": record_text},
    }
    for axis, value, unit in zip(axes, scale, units, strict=True):
        symbol = meta.ome_unit(unit)
        if axis in "XYZ" and symbol is not None:
            metadata[f"PhysicalSize{axis}"] = float(value)
            metadata[f"PhysicalSize{axis}Unit"] = symbol
        elif axis == "T" and symbol is not None:
            metadata["TimeIncrement"] = float(value)
            metadata["TimeIncrementUnit"] = symbol
    return metadata


def save_labels(
    path: str | os.PathLike,
    labels: Any,
    scale: Sequence[float] | None = None,
    units: Sequence[str] | str | None = None,
    axes: str | Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    *,
    translate: Sequence[float] | None = None,
    name: str | None = None,
) -> Path:
    """Save a label image as a zlib-compressed TIFF with metadata and provenance.

    Parameters
    ----------
    path : str or os.PathLike
        Target file. ``.ome.tif``/``.ome.tiff`` gives OME-TIFF, ``.tif``/``.tiff``
        an ImageJ hyperstack (a plain TIFF when ImageJ cannot hold the data).
    labels : array-like of int
        Label image, 0 = background, IDs >= 0 (numpy or dask).
    scale : sequence of float, optional
        Pixel size per axis (default 1.0).
    units : str or sequence of str, optional
        Unit per axis, or one unit for all (default ``"pixel"``); any pint name
        or alias (``"um"``, ``"µm"``, ``"micrometer"``).
    axes : str or sequence of str, optional
        Axis letters or napari axis labels, e.g. ``"ZYX"`` or ``("z", "y", "x")``;
        default the last ``ndim`` of ``"TZYX"``.
    provenance : mapping, optional
        JSON-serialisable record (see :mod:`napari_sam2.io.provenance`). Stored as
        given (after normalisation), so it reads back equal.
    translate : sequence of float, optional
        World offset per axis, restored by our reader.
    name : str, optional
        Layer name, restored by our reader.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    LabelsWriteError
        If the labels are not integers, are negative, or exceed uint32.
    ValueError
        If ``scale``/``units``/``axes`` do not match the number of dimensions.
    """
    path = Path(os.fspath(path))
    data = np.asarray(labels)
    if data.ndim < 2:
        raise ValueError(f"labels must be at least 2D, got shape {data.shape}")
    dtype = labels_dtype(data, smallest=np.uint16)  # TIFF label readers expect >= 16 bit
    ndim = data.ndim
    if isinstance(axes, str):
        letters = axes.upper()
        if len(letters) != ndim or len(set(letters)) != ndim or set(letters) - set("TZYX"):
            raise ValueError(f"axes {axes!r} must be {ndim} distinct letters of T, Z, Y, X")
    else:
        letters = meta.axes_from_labels(axes, ndim)
    scale_list = [float(s) for s in _per_axis(scale, ndim, 1.0, "scale")]
    if any(not np.isfinite(s) or s <= 0 for s in scale_list):
        raise ValueError(f"scale must be positive and finite, got {scale_list}")
    unit_list = [
        meta.normalise_unit(u) or "pixel" for u in _per_axis(units, ndim, "pixel", "units")
    ]
    translate_list = [float(t) for t in _per_axis(translate, ndim, 0.0, "translate")]
    prov = normalise_provenance(provenance) if provenance is not None else None
    record = meta.make_record(letters, scale_list, unit_list, translate_list, name, prov)
    text = meta.record_to_text(record)
    data = data.astype(dtype, copy=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    common = {"compression": "zlib", "photometric": "minisblack"}
    if _is_ome(path):
        metadata = _ome_metadata(letters, scale_list, unit_list, text)
        tifffile.imwrite(path, data, ome=True, metadata=metadata, **common)
    elif dtype == np.uint16 and meta.is_canonical(letters):
        resolution, metadata = _imagej_metadata(letters, scale_list, unit_list, text)
        tifffile.imwrite(
            path, data, imagej=True, resolution=resolution, metadata=metadata, **common
        )
    else:
        if dtype != np.uint16:
            warnings.warn(
                f"{path.name}: label IDs exceed 65535, writing a uint32 TIFF that "
                "ImageJ opens only through Bio-Formats",
                UserWarning,
                stacklevel=2,
            )
        metadata = {"axes": letters, meta.RECORD_KEY: text}
        tifffile.imwrite(path, data, metadata=metadata, **common)
    return path


def load_labels(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Load a label image and its metadata, without napari.

    Parameters
    ----------
    path : str or os.PathLike
        A labels TIFF, ideally one written by :func:`save_labels`.

    Returns
    -------
    labels : numpy.ndarray
        The label image (uint16 or uint32).
    info : dict
        ``axes`` (str), ``scale``, ``units``, ``translate`` (tuples per axis),
        ``name`` (str or None) and ``provenance`` (dict or None; None for files
        that napari-sam2 did not write).

    Raises
    ------
    napari_sam2.io.tiff.reader.TiffReadError
        If the file is not a readable TIFF.
    """
    from .reader import open_tiff

    data, info = open_tiff(path, lazy=False)
    record = info.record or {}
    return np.asarray(data), {
        "axes": info.axes,
        "scale": tuple(info.scale),
        "units": tuple(info.units),
        "translate": tuple(record.get("translate") or (0.0,) * len(info.axes)),
        "name": record.get("name"),
        "provenance": record.get("provenance"),
    }


def write_labels_tiff(
    path: str | os.PathLike,
    labels: Any,
    provenance: Mapping[str, Any],
    *,
    axes: str | None,
    scale: Sequence[float] | None,
    units: Sequence[str] | None,
) -> Path:
    """The labels TIFF of a command (``napari-sam2 segment``, batch): :func:`save_labels`
    with ``provenance`` = the fields of a :func:`~napari_sam2.io.provenance.make_provenance`
    record.  ``axes`` (with ``scale``/``units``) are kept when they are distinct letters
    of ``TZYX``; otherwise the writer picks its TZYX defaults and a scale of 1."""
    if not (axes and len(set(axes)) == len(axes) and set(axes) <= set("TZYX")):
        axes = scale = units = None
    return save_labels(
        path, labels, scale=scale, units=units, axes=axes,
        provenance=make_provenance(**provenance),
    )  # fmt: skip


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer contribution for a single Labels layer.

    Parameters
    ----------
    path : str
        Target path chosen in napari's save dialog.
    data : array-like
        The Labels layer data (multiscale labels: the full-resolution level).
    attributes : dict
        The layer state (``scale``, ``units``, ``axis_labels``, ``translate``,
        ``name``, ``metadata``). ``metadata["napari_sam2"]`` is stored as the
        provenance; when missing, a minimal record from
        :func:`~napari_sam2.io.provenance.make_provenance` is written instead.

    Returns
    -------
    list of str
        The written path.
    """
    if isinstance(data, list):  # multiscale labels: save the full resolution
        data = data[0]
    metadata = attributes.get("metadata") or {}
    provenance = metadata.get("napari_sam2")
    if provenance is None:
        provenance = make_provenance(source="napari Labels layer without napari-sam2 provenance")
    units = attributes.get("units")
    written = save_labels(
        path,
        data,
        scale=attributes.get("scale"),
        units=[str(u) for u in units] if units is not None else None,
        axes=attributes.get("axis_labels"),
        provenance=provenance,
        translate=attributes.get("translate"),
        name=attributes.get("name"),
    )
    return [str(written)]
