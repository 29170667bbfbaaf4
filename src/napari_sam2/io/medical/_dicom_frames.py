"""Private: find DICOM files, split them into frames with geometry, sort a series.

Everything is read through pydicom; this module only gathers tags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import DicomReadError

_DICM = b"DICM"
_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")
# SOP classes / modalities that hold no image to show (directories, reports, plans, SEG)
_NON_IMAGE_MODALITIES = {"SR", "RTSTRUCT", "RTPLAN", "SEG", "PR", "KO", "DOC", "REG"}
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_POSITION_TOL = 1e-3  # mm: positions closer than this are one position


def has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == _DICM


def is_dicom_file(path: Path) -> bool:
    """DICM preamble, or a ``.dcm``-named file pydicom reads without a preamble."""
    if not path.is_file():
        return False
    if has_dicom_magic(path):
        return True
    if path.suffix.lower() not in _DICOM_SUFFIXES:
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return False
    return "SOPClassUID" in ds or "Modality" in ds


def _dicomdir_files(path: Path) -> list[Path]:
    """The image files a DICOMDIR references (its records' ReferencedFileID)."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise DicomReadError(f"cannot read the DICOMDIR {path.name}: {exc}") from exc
    files = []
    for record in ds.get("DirectoryRecordSequence") or ():
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = (
            [str(p) for p in ref] if isinstance(ref, pydicom.multival.MultiValue) else [str(ref)]
        )
        candidate = path.parent.joinpath(*parts)
        if candidate.is_file():
            files.append(candidate)
    return files


_NOT_DICOM_FOLDER_MARKERS = (".zarray", ".zgroup", "zarr.json", ".zattrs")


def folder_has_dicom(path: Path, max_files: int = 300) -> bool:
    """Quick probe for the napari reader: a DICOMDIR, or a DICOM file among the first
    ``max_files`` files (zarr stores are skipped without looking inside)."""
    if any((path / n).is_file() for n in ("DICOMDIR", "dicomdir")):
        return True
    seen = 0
    for root, dirs, files in os.walk(path):
        if root.endswith(".zarr") or any(m in files for m in _NOT_DICOM_FOLDER_MARKERS):
            dirs[:] = []
            continue
        dirs.sort()
        for f in sorted(files):
            if has_dicom_magic(Path(root) / f):
                return True
            seen += 1
            if seen >= max_files:
                return False
    return False


def find_files(path: Path) -> list[Path]:
    """DICOM files of a file, a DICOMDIR, or a folder (searched recursively).

    A folder holding a ``DICOMDIR`` is read through it. Returns [] when there are none.
    """
    if path.is_dir():
        dicomdir = next((path / n for n in ("DICOMDIR", "dicomdir") if (path / n).is_file()), None)
        if dicomdir is not None:
            return _dicomdir_files(dicomdir)
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found += [Path(root) / f for f in sorted(files) if has_dicom_magic(Path(root) / f)]
        return found
    if not is_dicom_file(path):
        return []
    if path.name.upper() == "DICOMDIR" or _sop_class(path) == MEDIA_STORAGE_DIRECTORY:
        return _dicomdir_files(path)
    return [path]


def _sop_class(path: Path) -> str:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError):
        return ""
    meta = getattr(ds, "file_meta", None)
    return str(getattr(meta, "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))


def read_header(path: Path):
    """pydicom dataset without pixel data, or None for non-image objects."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return None
    return image_header(ds)


def image_header(ds):
    """``ds`` when it is an image of a series (has Rows, not a SEG/SR/…), else None."""
    if "Rows" not in ds or str(ds.get("Modality", "")).upper() in _NON_IMAGE_MODALITIES:
        return None
    return ds


@dataclass
class Frame:
    """One 2-D frame of a series with its geometry and rescale (None = not in the file)."""

    path: Path
    index: int | None  # frame number in a multi-frame file, None for single-frame files
    position: np.ndarray | None
    orientation: np.ndarray | None  # (row_dir, col_dir) as 6 values
    spacing: tuple[float, float] | None  # (between rows, between columns) in mm
    slope: float = 1.0
    intercept: float = 0.0
    instance: int = 0
    windows: list[dict] = field(default_factory=list)
    thickness: float | None = None


def _floats(value, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.all(np.isfinite(arr)) else None


def _first(item, sequence: str):
    seq = item.get(sequence) if item is not None else None
    return seq[0] if seq else None


def _windows(ds) -> list[dict]:
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centers is None or widths is None:
        return []
    multi = pydicom.multival.MultiValue
    centers = list(centers) if isinstance(centers, multi) else [centers]
    widths = list(widths) if isinstance(widths, multi) else [widths]
    notes = ds.get("WindowCenterWidthExplanation", "")
    notes = list(notes) if isinstance(notes, multi) else [notes] * len(centers)
    out = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        try:
            out.append({"center": float(c), "width": float(w), "explanation": str(notes[i] or "")})
        except (TypeError, ValueError, IndexError):
            continue
    return out


def _pixel_spacing(ds) -> tuple[float, float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds.get(key, ()), 2)
        if values is not None and np.all(values > 0):
            return (float(values[0]), float(values[1]))
    return None


def _rescale(ds) -> tuple[float, float]:
    try:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        if "RescaleSlope" not in ds and "DoseGridScaling" in ds:  # RT Dose: pixel × scaling
            slope = float(ds.DoseGridScaling or 1.0)
    except (TypeError, ValueError):
        return 1.0, 0.0
    return slope, intercept


def _grid_offsets(ds, count: int) -> np.ndarray | None:
    """RT Dose (and other multi-frame without functional groups) frame offsets along the
    slice normal, relative to ImagePositionPatient, from GridFrameOffsetVector."""
    offsets = _floats(ds.get("GridFrameOffsetVector", ()), count) if count > 1 else None
    if offsets is None:
        return None
    if offsets[0] != 0:  # the older absolute form: first offset is the first frame's own
        offsets = offsets - offsets[0]
    return offsets


def _thickness(ds) -> float | None:
    try:
        value = float(ds.get("SliceThickness", 0) or 0)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def frames_of(path: Path, ds) -> list[Frame]:
    """The frames of one file: one for classic images, NumberOfFrames for multi-frame.

    A malformed header value (``NumberOfFrames = "1A"``) is a :class:`DicomReadError`
    naming the file, not a bare ``ValueError``.
    """
    try:
        return _frames_of(path, ds)
    except DicomReadError:
        raise
    except (TypeError, ValueError) as exc:
        raise DicomReadError(f"{Path(path).name}: malformed DICOM header: {exc}") from exc


def _frames_of(path: Path, ds) -> list[Frame]:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    base = Frame(
        path,
        None,
        _floats(ds.get("ImagePositionPatient", ()), 3),
        _floats(ds.get("ImageOrientationPatient", ()), 6),
        _pixel_spacing(ds),
        *_rescale(ds),
        int(ds.get("InstanceNumber", 0) or 0),
        _windows(ds),
        _thickness(ds),
    )
    if count == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [base]
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * count
    offsets = None if "PerFrameFunctionalGroupsSequence" in ds else _grid_offsets(ds, count)
    if offsets is not None and base.position is not None and base.orientation is not None:
        ori = base.orientation
        normal = np.cross(ori[:3], ori[3:])
        normal = normal / np.linalg.norm(normal)
        return [
            replace(base, index=i, position=base.position + offsets[i] * normal, instance=i + 1)
            for i in range(count)
        ]
    frames = []
    for i in range(count):
        own = per_frame[i] if i < len(per_frame) else None

        def group(name, own=own):
            return _first(own, name) or _first(shared, name)

        pos = group("PlanePositionSequence")
        ori = group("PlaneOrientationSequence")
        measures = group("PixelMeasuresSequence")
        value = group("PixelValueTransformationSequence")
        voi = group("FrameVOILUTSequence")
        frame = Frame(
            path,
            i,
            _floats(pos.get("ImagePositionPatient", ()), 3) if pos else base.position,
            _floats(ori.get("ImageOrientationPatient", ()), 6) if ori else base.orientation,
            (_pixel_spacing(measures) if measures else None) or base.spacing,
            *(_rescale(value) if value else (base.slope, base.intercept)),
            i + 1,
            _windows(voi) if voi else base.windows,
            (_thickness(measures) if measures else None) or base.thickness,
        )
        frames.append(frame)
    return frames


@dataclass
class Stack:
    """Frames sorted into a volume: ``order[k]`` is the frame shown at slice k."""

    order: list[int]
    vox2lps: np.ndarray | None  # 4x4 for axes (slice, row, col); None without geometry
    volumes: int = 1  # >1: several frames per position (time/echo), shown as a leading axis
    warnings: list[str] = field(default_factory=list)


def _has_geometry(frames: list[Frame]) -> bool:
    return all(
        f.position is not None and f.orientation is not None and f.spacing is not None
        for f in frames
    )


def sort_frames(frames: list[Frame], what: str) -> Stack:
    """Order frames by ImagePositionPatient projected on the slice normal.

    The normal is ``cross(row_dir, col_dir)`` of the first frame. The slice spacing is
    the median step of the projections (never SliceThickness); uneven steps and gaps
    (missing slices) give warnings. Frames sharing a position (time points, echoes) are
    grouped into volumes when every position has the same number of them.
    Without geometry, frames keep InstanceNumber order.
    """
    warnings: list[str] = []
    if not _has_geometry(frames):
        order = sorted(range(len(frames)), key=lambda i: (frames[i].instance, i))
        if len(frames) > 1:
            warnings.append(
                f"{what}: no ImagePositionPatient/ImageOrientationPatient; "
                "slices are ordered by InstanceNumber and shown without physical slice spacing"
            )
        return Stack(order, None, 1, warnings)
    ori = frames[0].orientation
    row_dir, col_dir = ori[:3] / np.linalg.norm(ori[:3]), ori[3:] / np.linalg.norm(ori[3:])
    normal = np.cross(row_dir, col_dir)
    if any(not np.allclose(f.orientation, ori, atol=1e-4) for f in frames):
        warnings.append(f"{what}: slices have different orientations; using the first one")
    proj = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = sorted(
        range(len(frames)), key=lambda i: (round(proj[i] / _POSITION_TOL), frames[i].instance, i)
    )
    sorted_proj = proj[order]
    unique = [sorted_proj[0]]
    for p in sorted_proj[1:]:
        if p - unique[-1] > _POSITION_TOL:
            unique.append(p)
    n_pos, volumes = len(unique), 1
    if n_pos < len(frames):
        if len(frames) % n_pos == 0:
            volumes = len(frames) // n_pos
            # regroup: volume v holds the v-th frame of every position
            order = [order[k * volumes + v] for v in range(volumes) for k in range(n_pos)]
            warnings.append(
                f"{what}: {volumes} images per slice position (time points or echoes), "
                "shown as a leading axis"
            )
        else:
            warnings.append(
                f"{what}: {len(frames) - n_pos} duplicate slice positions; keeping the first "
                "image at each position"
            )
            keep, last = [], None
            for i in order:
                if last is None or proj[i] - last > _POSITION_TOL:
                    keep.append(i)
                    last = proj[i]
            order = keep
    steps = np.diff(np.asarray(unique))
    if steps.size:
        step = float(np.median(steps))
        tol = max(0.01 * step, _POSITION_TOL)
        gaps = np.round(steps / step).astype(int)
        missing = int(np.sum(gaps - 1)) if np.all(gaps >= 1) else 0
        if missing:
            warnings.append(
                f"{what}: {missing} missing slice(s) (gaps in ImagePositionPatient); the "
                f"volume is shown with the regular spacing {step:.4g} mm, so slices after a "
                "gap are misplaced"
            )
        elif np.any(np.abs(steps - step) > tol):
            warnings.append(
                f"{what}: uneven slice spacing ({steps.min():.4g}–{steps.max():.4g} mm); "
                f"shown with the median spacing {step:.4g} mm"
            )
    else:
        step = frames[order[0]].thickness or 1.0
    dr, dc = frames[order[0]].spacing
    vox2lps = np.eye(4)
    vox2lps[:3, 0] = normal * step
    vox2lps[:3, 1] = col_dir * dr
    vox2lps[:3, 2] = row_dir * dc
    vox2lps[:3, 3] = frames[order[0]].position
    return Stack(order, vox2lps, volumes, warnings)
