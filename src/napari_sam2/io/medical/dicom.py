"""Read DICOM files, folders and DICOMDIRs with pydicom: one layer per series.

* Files are grouped by SeriesInstanceUID (and image size); each series becomes one
  layer named by its SeriesDescription (else ``"<Modality> series <SeriesNumber>"``).
* Slices are ordered by ImagePositionPatient projected on the slice normal
  (``cross(row_dir, col_dir)``), never by file name or InstanceNumber; the slice spacing
  is the step of those projections, not SliceThickness. Uneven spacing, missing slices
  or duplicate positions give a warning (napari shows it).
* RescaleSlope/RescaleIntercept are applied per slice: CT comes out in Hounsfield units.
* Multi-frame and enhanced multi-frame files (per-frame and shared functional groups)
  are split into frames and sorted the same way.
* Volumes use the display orientation of :mod:`napari_sam2.io.medical._orient` (world = LPS mm,
  axial planes radiological); 2-D modalities (radiographs, ultrasound, …) without
  patient geometry open as 2-D layers (cine loops as ``t, y, x``), in mm when the file
  has PixelSpacing/ImagerPixelSpacing.
* No patient-identifying tag is copied into the layer metadata or any message unless
  ``include_identifiers=True``.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import dicom_labels
from ._dicom_frames import (
    DicomReadError,
    find_files,
    folder_has_dicom,
    has_dicom_magic,
    image_header,
    is_dicom_file,
)
from .dicom_series import (
    DicomSeriesWarning,
    build_series,
    group_files,
    group_headers,
    series_name,
)
from .windowing import file_windows, preset_limits, robust_limits

__all__ = [
    "DicomReadError",
    "DicomSeriesWarning",
    "folder_has_dicom",
    "get_reader",
    "has_dicom_magic",
    "layer_tuples",
    "list_series",
    "open_datasets",
    "open_dicom",
    "open_series",
    "read_dicom",
]


def get_reader(path: str | list[str]):
    """npe2 reader contribution: DICOM files, folders holding DICOM files, DICOMDIRs."""
    paths = [Path(os.fspath(p)) for p in path] if isinstance(path, (list, tuple)) else None
    if paths is not None:
        if paths and all(is_dicom_file(p) for p in paths):
            return partial(_napari_reader)
        return None
    candidate = Path(os.fspath(path))
    if candidate.is_dir():
        return partial(_napari_reader) if folder_has_dicom(candidate) else None
    if is_dicom_file(candidate):
        return partial(_napari_reader)
    return None


def _napari_reader(path) -> list[tuple]:
    return read_dicom(path)


def _collect(path) -> list[Path]:
    if isinstance(path, (list, tuple)):
        files: list[Path] = []
        for item in path:
            files += find_files(Path(os.fspath(item)))
        return files
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return find_files(path)


def _listing(groups) -> list[dict]:
    out = []
    for items in groups:
        items = sorted(items, key=lambda item: str(item[0]))
        frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in items)
        out.append({"name": series_name(items[0][1]), "images": frames})
    return out


def list_series(path) -> list[dict]:
    """The image series under ``path``, in :func:`open_dicom`'s order, from the headers
    only (no pixel is decoded): ``name`` and ``images`` (frames) of each."""
    return _listing(group_files(_collect(path)))


def open_series(path, series: int, *, include_identifiers: bool = False):
    """``(list_series(path), (data, info) of series ``series``)`` with every header read
    once; ``(listing, None)`` when ``series`` is out of range (the caller says how).

    Raises
    ------
    DicomReadError
        If there is no DICOM image, or the pixel data cannot be decoded.
    """
    groups = group_files(_collect(path))
    if not groups:
        raise DicomReadError(f"no DICOM image found in {Path(os.fspath(path)).name or path}")
    listing = _listing(groups)
    if not -len(groups) <= series < len(groups):
        return listing, None
    return listing, build_series(groups[series], include_identifiers)


def open_dicom(
    path, *, include_identifiers: bool = False, series: int | None = None
) -> list[tuple[np.ndarray, dict]]:
    """Read every image series under ``path`` (file, folder, DICOMDIR, or a list of files).

    ``series``: read only that one (an index into :func:`list_series`; negative counts
    from the end); the list then has one item.

    Returns
    -------
    list of (data, info)
        One per series. ``info`` has ``name``, ``scale``, ``translate`` (and ``affine``
        for oblique series), ``units``, ``axis_labels``, ``rgb``, ``warnings`` (geometry
        doubts) and ``medical`` (modality, windows, units, source affine …).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DicomReadError
        If there is no DICOM image, or pixel data cannot be decoded (the message names
        the package to install).
    """
    if series is not None:
        listing, found = open_series(path, series, include_identifiers=include_identifiers)
        if found is None:
            raise DicomReadError(
                f"{Path(os.fspath(path)).name or path} holds {len(listing)} DICOM series: "
                f"series {series} does not exist"
            )
        return [found]
    groups = group_files(_collect(path))
    if not groups:
        raise DicomReadError(f"no DICOM image found in {Path(os.fspath(path)).name or path}")
    return [build_series(items, include_identifiers) for items in groups]


def open_datasets(datasets, *, include_identifiers: bool = False) -> list[tuple[np.ndarray, dict]]:
    """:func:`open_dicom` of in-memory pydicom datasets with their pixel data (instances
    retrieved over DICOMweb, say): the same grouping, slice order, spacing, rescale,
    windows and warnings as for their files. Each dataset's SOPInstanceUID stands for its
    file name, so ``medical["source_files"]`` lists SOP Instance UIDs, in slice order.

    Raises
    ------
    DicomReadError
        If no dataset is an image, or pixel data cannot be decoded.
    """
    pairs = [
        (Path(str(ds.get("SOPInstanceUID", "") or f"instance-{i}")), image_header(ds))
        for i, ds in enumerate(datasets)
    ]
    groups = group_headers(pairs)
    if not groups:
        raise DicomReadError("no DICOM image among the retrieved instances")
    return [build_series(items, include_identifiers) for items in groups]


def _contrast_limits(data: np.ndarray, metadata: dict) -> list[float]:
    medical = metadata["medical"]
    windows = file_windows(metadata)
    if windows:
        return list(preset_limits(windows[0][0], metadata=metadata))
    if medical.get("modality") == "CT" and medical.get("units") == "HU":
        return list(preset_limits("soft tissue"))
    return robust_limits(data)


def read_dicom(path, *, include_identifiers: bool = False) -> list[tuple]:
    """Read DICOM into napari LayerData tuples, one image layer per series.

    CT layers start with the file's own window (else soft tissue W400/L40); others with
    robust percentiles. Geometry doubts are issued as :class:`DicomSeriesWarning`.
    DICOM SEG and RTSTRUCT objects among the files become Labels layers on the grid of
    the series they annotate (:mod:`napari_sam2.io.dicom_labels`).
    """
    objects = dicom_labels.label_objects(_collect(path))
    try:
        opened = open_dicom(path, include_identifiers=include_identifiers)
    except DicomReadError:
        if not objects:
            raise
        opened = []
    layers = layer_tuples(opened)
    search = partial(open_dicom, include_identifiers=include_identifiers)
    return layers + dicom_labels.label_layers(objects, opened, search)


def layer_tuples(opened) -> list[tuple]:
    """napari LayerData tuples of :func:`open_dicom`'s (or :func:`open_datasets`') series,
    with their warnings issued: what :func:`read_dicom` returns for the images."""
    layers = []
    seen: dict[str, int] = defaultdict(int)
    for data, info in opened:
        for message in info["warnings"]:
            warnings.warn(message, DicomSeriesWarning, stacklevel=2)
        seen[info["name"]] += 1
        name = (
            info["name"] if seen[info["name"]] == 1 else f"{info['name']} [{seen[info['name']]}]"
        )
        metadata = {"medical": info["medical"]}
        kwargs: dict[str, Any] = {
            "name": name,
            "metadata": metadata,
            "rgb": info["rgb"],
            "units": info["units"],
            "axis_labels": info["axis_labels"],
        }
        for key in ("scale", "translate", "affine"):
            if key in info:
                kwargs[key] = info[key]
        if not info["rgb"]:
            kwargs["contrast_limits"] = _contrast_limits(data, metadata)
            mono1 = info["medical"]["photometric"].upper() == "MONOCHROME1"
            kwargs["colormap"] = "gray_r" if mono1 else "gray"
        layers.append((data, kwargs, "image"))
    return layers
