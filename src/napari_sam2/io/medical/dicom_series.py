"""A DICOM series from its files' headers and frames: grouping into series, slice order,
rescaling to physical values, the layer metadata (:mod:`napari_sam2.io.medical.dicom`
reads files, folders and DICOMDIRs with it)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from . import _orient
from ._dicom_decode import pixels
from ._dicom_frames import (
    DicomReadError,
    Frame,
    frames_of,
    read_header,
    sort_frames,
)

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


def series_name(ds) -> str:
    description = str(ds.get("SeriesDescription", "") or "").strip()
    if description:
        return description
    modality = str(ds.get("Modality", "") or "DICOM")
    number = ds.get("SeriesNumber")
    return f"{modality} series {number}" if number not in (None, "") else f"{modality} series"


def orientation_key(ds) -> tuple:
    """Rounded ImageOrientationPatient: tri-plane localisers split into one stack per plane."""
    try:
        values = [float(v) for v in ds.get("ImageOrientationPatient", ())]
    except (TypeError, ValueError):
        return ()
    return tuple(round(v, 2) + 0.0 for v in values)


def group_files(files: list[Path]) -> list[list[tuple[Path, Any]]]:
    return group_headers((f, read_header(f)) for f in files)


def group_headers(pairs) -> list[list[tuple[Path, Any]]]:
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
            orientation_key(ds),
        )
        groups[key].append((f, ds))
    return list(groups.values())


def rescale_frames(raw: np.ndarray, frames: list[Frame]) -> np.ndarray:
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


def frame_pixels(items: list[tuple[Path, Any]], frames: list[Frame]) -> np.ndarray:
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


def identifiers(ds) -> dict:
    return {tag: str(ds.get(tag, "")) for tag in IDENTIFYING_TAGS if tag in ds}


def build_series(
    items: list[tuple[Path, Any]], include_identifiers: bool
) -> tuple[np.ndarray, dict]:
    items = sorted(items, key=lambda item: str(item[0]))
    first = items[0][1]
    name = series_name(first)
    modality = str(first.get("Modality", "") or "").upper()
    frames = [fr for path, ds in items for fr in frames_of(path, ds)]
    stack = sort_frames(frames, name)
    ordered = [frames[i] for i in stack.order]
    try:
        raw = frame_pixels(items, ordered)
    except DicomReadError as exc:
        raise DicomReadError(f"series '{name}' ({modality or 'DICOM'}): {exc}") from exc
    rgb = int(first.get("SamplesPerPixel", 1) or 1) > 1 or raw.ndim == 4
    data = raw if rgb else rescale_frames(raw, ordered)
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
        medical["identifiers"] = identifiers(first)
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
        return single_plane(data, stack, info)
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


def single_plane(data: np.ndarray, stack, info: dict) -> tuple[np.ndarray, dict]:
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
