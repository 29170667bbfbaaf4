"""Read DICOM SEG and RTSTRUCT back as labels on the grid of the series they annotate.

A segmentation made elsewhere (or by napari-sam2 earlier) opens as a Labels layer that
lies exactly on its source image layer, ready to be corrected and saved again:

* **DICOM SEG** (highdicom): frames are matched to the source images by their referenced
  SOP Instance UIDs (and frame numbers for multi-frame sources), then put in the
  display orientation of :mod:`napari_sam2.io.medical.dicom`. Segment IDs come back as the label
  IDs napari-sam2 wrote (TrackingID ``"napari-sam2 label <ID>"``, else a ``"label <ID>"``
  segment label), otherwise as the segment numbers; names and codes go to
  ``metadata["segments"]`` (and the layer's ``features``), so *Save as DICOM SEG* keeps them.
* **RTSTRUCT** (pydicom): each closed planar contour is rasterised on its source slice
  (voxel centres inside the polygon; several contours of one ROI on a slice combine
  even-odd, so inner contours are holes). Label ID = ROI Number, names from ROIName.

The source series is the one opened beside the object (same folder or file list), else
it is looked for in the object's folder and the folder above (a study folder with one
subfolder per series). Without it the object cannot be placed: :class:`DicomReadError`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from nibabel.orientations import apply_orientation

from ._dicom_frames import DicomReadError, find_files
from .dicom_seg import HIGHDICOM_MISSING
from .segment_codes import SegmentSpec, default_label, label_id_of

__all__ = ["LABEL_MODALITIES", "label_layers", "label_objects", "labels_on_source"]

LABEL_MODALITIES = ("SEG", "RTSTRUCT")
_HEADER_TAGS = ["Modality", "SeriesInstanceUID", "SOPInstanceUID"]
_SEARCH_LIMIT = 20000  # files looked at when searching a study folder for the source


def _header(path: Path, tags: list[str] | None = None):
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=tags)
    except Exception:
        return None


def label_objects(files: Iterable[Path]) -> list[Path]:
    """The DICOM SEG and RTSTRUCT files among ``files``."""
    found = []
    for f in files:
        ds = _header(Path(f), ["Modality"])
        if ds is not None and str(ds.get("Modality", "")).upper() in LABEL_MODALITIES:
            found.append(Path(f))
    return found


def _referenced_series(ds) -> str:
    if str(ds.get("Modality", "")).upper() == "SEG":
        refs = ds.get("ReferencedSeriesSequence") or []
        return str(refs[0].SeriesInstanceUID) if refs else ""
    for frame_ref in ds.get("ReferencedFrameOfReferenceSequence") or []:
        for study in frame_ref.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                return str(series.SeriesInstanceUID)
    return ""


def _source_series_uid(medical: dict) -> str:
    files = medical.get("source_files") or []
    ds = _header(Path(files[0]), ["SeriesInstanceUID"]) if files else None
    return str(ds.get("SeriesInstanceUID", "")) if ds is not None else ""


def _segment_map_to_display(frames: np.ndarray, medical: dict, shape: Sequence[int]):
    """(source frame, row, column) labels → the display array of the source layer."""
    xform = medical.get("display_ornt")
    if xform is None:
        out = frames
    else:
        out = apply_orientation(np.transpose(frames, (2, 1, 0)), np.asarray(xform, float))
    out = np.ascontiguousarray(out.reshape(tuple(shape)))
    return out


def _seg_frames(path: Path, medical: dict) -> tuple[np.ndarray, dict[int, SegmentSpec]]:
    try:
        import highdicom as hd
    except ImportError as exc:
        raise ImportError(HIGHDICOM_MISSING) from exc

    seg = hd.seg.segread(path)
    files = [Path(p) for p in medical["source_files"]]
    numbers = [f if f is None else int(f) for f in medical.get("source_frames") or []]
    common = {
        "combine_segments": True,
        "relabel": False,
        "assert_missing_frames_are_empty": True,
        "skip_overlap_checks": True,
        "dtype": np.int32,
    }
    try:
        if numbers and numbers[0] is not None:  # frames of one multi-frame source image
            uid = str(_header(files[0], ["SOPInstanceUID"]).SOPInstanceUID)
            frames = seg.get_pixels_by_source_frame(
                uid, source_frame_numbers=[n + 1 for n in numbers], **common
            )
        else:
            uids = [str(_header(f, ["SOPInstanceUID"]).SOPInstanceUID) for f in files]
            frames = seg.get_pixels_by_source_instance(uids, **common)
    except (ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise DicomReadError(
            f"{path.name}: the SEG does not fit its source series: {exc}"
        ) from exc
    specs: dict[int, SegmentSpec] = {}
    lut = np.zeros(int(max(seg.get_segment_numbers(), default=0)) + 1, np.int32)
    for number in seg.get_segment_numbers():
        desc = seg.get_segment_description(number)
        label_id = label_id_of(desc.segment_label, desc.get("TrackingID"), number)
        lut[number] = label_id
        specs[label_id] = SegmentSpec(
            str(desc.segment_label),
            category=_triple(desc.segmented_property_category),
            type=_triple(desc.segmented_property_type),
        )
    return lut[np.asarray(frames, np.int64)], specs


def _triple(code) -> tuple[str, str, str]:
    return (str(code.scheme_designator), str(code.value), str(code.meaning))


def _rt_frames(ds, medical: dict) -> tuple[np.ndarray, dict[int, SegmentSpec]]:
    from skimage.draw import polygon

    cols, rows, count = (int(s) for s in medical["source_shape"])
    vox2lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(medical["source_affine"], float)
    lps2vox = np.linalg.inv(vox2lps)
    names = {
        int(r.ROINumber): str(r.get("ROIName", ""))
        for r in ds.get("StructureSetROISequence") or []
    }
    frames = np.zeros((count, rows, cols), np.int32)
    specs: dict[int, SegmentSpec] = {}
    skipped = 0
    for roi in ds.get("ROIContourSequence") or []:
        label_id = int(roi.ReferencedROINumber)
        mask = np.zeros_like(frames, dtype=bool)
        for contour in roi.get("ContourSequence") or []:
            if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
            ijk = (lps2vox @ np.c_[points, np.ones(len(points))].T)[:3]
            k = float(np.mean(ijk[2]))
            if abs(k - round(k)) > 0.25 or not 0 <= round(k) < count:
                skipped += 1  # not on a slice of the source
                continue
            rr, cc = polygon(ijk[1], ijk[0], shape=(rows, cols))
            mask[round(k), rr, cc] ^= True
        if mask.any():
            frames[mask] = label_id
            specs[label_id] = SegmentSpec(names.get(label_id) or default_label(label_id))
    if skipped:
        warnings.warn(
            f"{skipped} RTSTRUCT contour(s) lie between or outside the source slices and were "
            "left out",
            UserWarning,
            stacklevel=3,
        )
    return frames, specs


def labels_on_source(path, medical: dict, shape: Sequence[int]) -> tuple[np.ndarray, dict]:
    """Labels of a SEG/RTSTRUCT file on its source layer's grid.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM SEG or RTSTRUCT file.
    medical : dict
        ``metadata["medical"]`` of the source image layer (from
        :func:`napari_sam2.io.medical.dicom.open_dicom`).
    shape : sequence of int
        Shape of the source image layer's data.

    Returns
    -------
    (labels, segments)
        int32 labels of ``shape`` and ``{label ID: {"label", "category", "type"}}``.
    """
    path = Path(os.fspath(path))
    if not medical.get("source_files"):
        raise DicomReadError(f"{path.name}: its source series has no single-volume geometry")
    ds = _header(path)
    if ds is None:
        raise DicomReadError(f"{path.name} is not a readable DICOM file")
    modality = str(ds.get("Modality", "")).upper()
    if modality == "SEG":
        frames, specs = _seg_frames(path, medical)
    elif modality == "RTSTRUCT":
        frames, specs = _rt_frames(ds, medical)
    else:
        raise DicomReadError(
            f"{path.name} is a {modality or 'DICOM'} object, not a SEG or RTSTRUCT"
        )
    labels = _segment_map_to_display(frames, medical, shape)
    return labels, {k: specs[k].as_dict() for k in sorted(specs)}


def _find_source(path: Path, series_uid: str, search) -> tuple | None:
    """Open the series ``series_uid`` from the folder of ``path`` or the folder above."""
    for folder in (path.parent, path.parent.parent):
        candidates = []
        for i, f in enumerate(find_files(folder)):
            if i >= _SEARCH_LIMIT:
                break
            ds = _header(f, _HEADER_TAGS)
            if (
                ds is not None
                and str(ds.get("SeriesInstanceUID", "")) == series_uid
                and str(ds.get("Modality", "")).upper() not in LABEL_MODALITIES
            ):
                candidates.append(f)
        if candidates:
            return search(candidates)[0]
    return None


def label_layers(objects: Sequence[Path], opened: Sequence[tuple[np.ndarray, dict]], search):
    """napari Labels layer tuples for SEG/RTSTRUCT ``objects``, on the grid of their
    source among ``opened`` (``open_dicom``'s ``(data, info)``), else of the series
    found near them by ``search(files) -> [(data, info)]``."""
    by_uid = {_source_series_uid(info["medical"]): (data, info) for data, info in opened}
    layers = []
    for path in objects:
        ds = _header(path)
        uid = _referenced_series(ds) if ds is not None else ""
        source = by_uid.get(uid) if uid else None
        if source is None and uid:
            source = _find_source(path, uid, search)
        if source is None:
            raise DicomReadError(
                f"{path.name}: the series it annotates ({'UID ' + uid if uid else 'no reference'})"
                " is not in the files opened nor in its folder: open the image series and the "
                "segmentation together (their folder)"
            )
        data, info = source
        labels, segments = labels_on_source(path, info["medical"], data.shape)
        kwargs: dict[str, Any] = {
            "name": str(ds.get("SeriesDescription", "") or f"{info['name']} {ds.Modality}"),
            "metadata": {"medical": info["medical"], "segments": segments},
            "units": info["units"],
            "axis_labels": info["axis_labels"],
            "features": {
                "index": np.array(list(segments), dtype=np.int64),
                "label": [s["label"] for s in segments.values()],
            },
        }
        for key in ("scale", "translate", "affine"):
            if key in info:
                kwargs[key] = info[key]
        layers.append((labels, kwargs, "labels"))
    return layers
