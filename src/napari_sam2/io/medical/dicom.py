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

from . import _orient, dicom_labels
from ._dicom_decode import pixels
from ._dicom_frames import (
    DicomReadError,
    Frame,
    find_files,
    folder_has_dicom,
    frames_of,
    has_dicom_magic,
    image_header,
    is_dicom_file,
    read_header,
    sort_frames,
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

TWO_D_MODALITIES = {"CR", "DX", "MG", "IO", "PX", "XA", "RF", "US", "ES", "XC", "OP", "GM", "SM"}
CINE_MODALITIES = {"US", "XA", "RF", "ES"}
IDENTIFYING_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "AccessionNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
)


class DicomSeriesWarning(UserWarning):
    """A series was read, but its geometry is doubtful (gaps, uneven spacing, …)."""


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


def _series_name(ds) -> str:
    description = str(ds.get("SeriesDescription", "") or "").strip()
    if description:
        return description
    modality = str(ds.get("Modality", "") or "DICOM")
    number = ds.get("SeriesNumber")
    return f"{modality} series {number}" if number not in (None, "") else f"{modality} series"


def _orientation_key(ds) -> tuple:
    """Rounded ImageOrientationPatient: tri-plane localisers split into one stack per plane."""
    try:
        values = [float(v) for v in ds.get("ImageOrientationPatient", ())]
    except (TypeError, ValueError):
        return ()
    return tuple(round(v, 2) + 0.0 for v in values)


def _group(files: list[Path]) -> list[list[tuple[Path, Any]]]:
    return _group_headers((f, read_header(f)) for f in files)


def _group_headers(pairs) -> list[list[tuple[Path, Any]]]:
    """``(path, header or None)`` pairs grouped into series (None: not an image)."""
    groups: dict[tuple, list] = defaultdict(list)
    for f, ds in pairs:
        if ds is None:
            continue
        key = (
            str(ds.get("SeriesInstanceUID", "")),
            int(ds.Rows),
            int(ds.get("Columns", 0)),
            int(ds.get("SamplesPerPixel", 1) or 1),
            _orientation_key(ds),
        )
        groups[key].append((f, ds))
    return list(groups.values())


def _rescaled(raw: np.ndarray, frames: list[Frame]) -> np.ndarray:
    """Apply each frame's slope/intercept; int16 when exact and in range, else float32."""
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return raw
    shape = (-1,) + (1,) * (raw.ndim - 1)
    integral = np.issubdtype(raw.dtype, np.integer)
    if (
        integral
        and np.all(slopes == np.round(slopes))
        and np.all(intercepts == np.round(intercepts))
    ):
        out = raw.astype(np.int64) * slopes.astype(np.int64).reshape(shape)
        out += intercepts.astype(np.int64).reshape(shape)
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if out.size == 0 or (out.min() >= info.min and out.max() <= info.max):
                return out.astype(dtype)
        return out
    return (raw * slopes.reshape(shape) + intercepts.reshape(shape)).astype(np.float32)


def _frame_pixels(items: list[tuple[Path, Any]], frames: list[Frame]) -> np.ndarray:
    """Decoded frames in the given order (each multi-frame file decoded once)."""
    import pydicom

    in_memory = {path: ds for path, ds in items if "PixelData" in ds}  # see open_datasets
    cache: dict[Path, np.ndarray] = {}
    planes = []
    for f in frames:
        if f.path not in cache:
            ds = in_memory.get(f.path)
            cache[f.path] = pixels(ds if ds is not None else pydicom.dcmread(f.path, force=True))
        arr = cache[f.path]
        planes.append(arr[f.index] if f.index is not None else arr)
    return np.stack(planes)


def _identifiers(ds) -> dict:
    return {tag: str(ds.get(tag, "")) for tag in IDENTIFYING_TAGS if tag in ds}


def _series(items: list[tuple[Path, Any]], include_identifiers: bool) -> tuple[np.ndarray, dict]:
    items = sorted(items, key=lambda item: str(item[0]))
    first = items[0][1]
    name = _series_name(first)
    modality = str(first.get("Modality", "") or "").upper()
    frames = [fr for path, ds in items for fr in frames_of(path, ds)]
    stack = sort_frames(frames, name)
    ordered = [frames[i] for i in stack.order]
    try:
        raw = _frame_pixels(items, ordered)
    except DicomReadError as exc:
        raise DicomReadError(f"series '{name}' ({modality or 'DICOM'}): {exc}") from exc
    rgb = int(first.get("SamplesPerPixel", 1) or 1) > 1 or raw.ndim == 4
    data = raw if rgb else _rescaled(raw, ordered)
    rescaled = data is not raw
    medical: dict[str, Any] = {
        "format": "dicom",
        "modality": modality,
        "series": name,
        "files": len(items),
        "frames": len(ordered),
        "windows": ordered[0].windows,
        "photometric": str(first.get("PhotometricInterpretation", "")),
        "transfer_syntax": str(
            getattr(getattr(first, "file_meta", None), "TransferSyntaxUID", "")
        ),
    }
    if rescaled or modality == "CT":
        medical["units"] = str(first.get("RescaleType", "") or ("HU" if modality == "CT" else ""))
    if "DoseGridScaling" in first and "RescaleSlope" not in first:
        medical["units"] = str(first.get("DoseUnits", "") or "GY").replace("GY", "Gy")
    if include_identifiers:
        medical["identifiers"] = _identifiers(first)
    if stack.volumes == 1:  # what a DICOM SEG must reference, in slice order
        medical["source_files"] = [str(f.path) for f in ordered]
        medical["source_frames"] = [f.index for f in ordered]
    info: dict[str, Any] = {
        "name": name,
        "medical": medical,
        "rgb": rgb,
        "warnings": stack.warnings,
    }
    single = len(ordered) == 1 or (stack.vox2lps is not None and data.shape[0] == stack.volumes)
    if stack.vox2lps is not None and single and not rgb:
        return _single_plane(data, stack, info)
    # colour images (ultrasound, photos, even with geometry) stay in acquisition order
    if stack.vox2lps is None or rgb or (modality in TWO_D_MODALITIES and len(ordered) == 1):
        spacing = ordered[0].spacing
        unit = "mm" if spacing else "pixel"
        spacing = spacing or (1.0, 1.0)
        if len(ordered) == 1:
            data = data[0]
            info.update(scale=spacing, units=(unit, unit), axis_labels=("y", "x"))
        else:
            lead = "t" if modality in CINE_MODALITIES else "z"
            info.update(
                scale=(1.0, *spacing), units=("pixel", unit, unit), axis_labels=(lead, "y", "x")
            )
        return data, info
    # volume: source voxel order (col, row, slice[, volume]) like dcm2niix, then display
    if stack.volumes > 1:
        data = data.reshape(stack.volumes, -1, *data.shape[1:])
        source = np.moveaxis(data, 0, -1)
    else:
        source = data
    source = np.swapaxes(source, 0, 2)
    vox2lps = stack.vox2lps[:, [2, 1, 0, 3]]
    vox2ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vox2lps
    disp, disp_aff, xform = _orient.to_display(source, vox2ras)
    lead = 1 if stack.volumes > 1 else 0
    if lead:
        disp = np.moveaxis(disp, 3, 0)
    transform = _orient.layer_transform(disp_aff, extra_leading=lead)
    info.update(transform)
    info["units"] = ("pixel",) * lead + ("mm",) * 3
    info["axis_labels"] = ("t",) * lead + _orient.AXIS_LABELS
    medical.update(
        source_affine=vox2ras.tolist(),
        source_shape=[int(s) for s in source.shape[:3]],
        display_ornt=None if xform is None else np.asarray(xform).tolist(),
        display_affine_ras=np.asarray(disp_aff).tolist(),
        world="LPS (z, y, x) = (S, P, L), mm",
    )
    return disp, info


def _single_plane(data: np.ndarray, stack, info: dict) -> tuple[np.ndarray, dict]:
    """One slice position: a 2-D layer in the acquisition plane (rows, columns), in mm.

    The patient geometry is kept in the metadata (``source_affine`` of the
    ``(column, row, 1)`` volume, ``display_ornt`` a pure axis swap) so labels can be
    written as a one-slice NIfTI in scanner coordinates.
    """
    vox2lps = stack.vox2lps[:, [2, 1, 0, 3]]
    vox2ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vox2lps
    dr = float(np.linalg.norm(stack.vox2lps[:3, 1]))
    dc = float(np.linalg.norm(stack.vox2lps[:3, 2]))
    lead = data.shape[0] > 1
    plane = data if lead else data[0]
    info.update(
        scale=((1.0,) if lead else ()) + (dr, dc),
        units=(("pixel",) if lead else ()) + ("mm", "mm"),
        axis_labels=(("t",) if lead else ()) + ("y", "x"),
    )
    info["medical"].update(
        source_affine=vox2ras.tolist(),
        source_shape=[int(data.shape[2]), int(data.shape[1]), 1],
        display_ornt=[[2.0, 1.0], [1.0, 1.0], [0.0, 1.0]],
        world="acquisition plane (rows, columns) in mm; patient geometry in source_affine",
    )
    return plane, info


def _listing(groups) -> list[dict]:
    out = []
    for items in groups:
        items = sorted(items, key=lambda item: str(item[0]))
        frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in items)
        out.append({"name": _series_name(items[0][1]), "images": frames})
    return out


def list_series(path) -> list[dict]:
    """The image series under ``path``, in :func:`open_dicom`'s order, from the headers
    only (no pixel is decoded): ``name`` and ``images`` (frames) of each."""
    return _listing(_group(_collect(path)))


def open_series(path, series: int, *, include_identifiers: bool = False):
    """``(list_series(path), (data, info) of series ``series``)`` with every header read
    once; ``(listing, None)`` when ``series`` is out of range (the caller says how).

    Raises
    ------
    DicomReadError
        If there is no DICOM image, or the pixel data cannot be decoded.
    """
    groups = _group(_collect(path))
    if not groups:
        raise DicomReadError(f"no DICOM image found in {Path(os.fspath(path)).name or path}")
    listing = _listing(groups)
    if not -len(groups) <= series < len(groups):
        return listing, None
    return listing, _series(groups[series], include_identifiers)


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
    groups = _group(_collect(path))
    if not groups:
        raise DicomReadError(f"no DICOM image found in {Path(os.fspath(path)).name or path}")
    return [_series(items, include_identifiers) for items in groups]


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
    groups = _group_headers(pairs)
    if not groups:
        raise DicomReadError("no DICOM image among the retrieved instances")
    return [_series(items, include_identifiers) for items in groups]


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
