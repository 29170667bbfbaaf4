"""Write labels as a DICOM Segmentation (SEG) referencing the source series (highdicom).

Optional: needs ``pip install "napari-sam2[medical-seg]"`` (highdicom). One segment per
label ID (segment numbers 1..N in increasing ID order), named and coded as the caller says
(:mod:`napari_sam2.io.segment_codes`; unnamed IDs are labelled ``"label <ID>"`` and coded
*Tissue*), the label ID kept in each segment's TrackingID so that
:mod:`napari_sam2.io.dicom_labels` reads the same IDs back; BINARY
segmentation, frames matched pixel for pixel to the source images: the display reordering
of :mod:`napari_sam2.io.medical._orient` is undone first. The SEG copies the patient and study of
the source (that is what a SEG is for), so it carries the identifiers the source carries.

The source series is found through ``layer.metadata["medical"]`` of a layer opened by
:mod:`napari_sam2.io.medical.dicom` (``source_files``/``source_frames``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LabelsWriteError
from . import _orient
from .segment_codes import SegmentSpec, default_label, parse_segments, tracking_id

__all__ = ["HIGHDICOM_MISSING", "save_labels_dicom_seg", "segmentation_dataset"]

HIGHDICOM_MISSING = (
    "DICOM SEG export needs highdicom: pip install 'napari-sam2[medical-seg]' "
    "(or pip install highdicom) in napari's Python environment"
)


def _highdicom():
    try:
        import highdicom
    except ImportError as exc:
        raise ImportError(HIGHDICOM_MISSING) from exc
    return highdicom


_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
"""Type 2 attributes of the Patient/Study modules a SEG copies from its source: present but
possibly empty. De-identified exports often drop them; they are added back *empty* (never
invented) so that highdicom can copy them."""


def _with_type2(ds):
    for keyword in _TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _frames_in_source_order(
    labels: np.ndarray, medical: Mapping[str, Any], expected: int
) -> np.ndarray:
    """Display-ordered labels → (frame, row, column) in the order of ``source_files``."""
    data = np.asarray(labels)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise LabelsWriteError(f"DICOM SEG export takes 2-D or 3-D labels, not {data.ndim}-D")
    xform = medical.get("display_ornt")
    if xform is None:  # no patient geometry: shown in acquisition order already
        frames = np.ascontiguousarray(data)
    else:  # display → source (column, row, slice) → (slice, row, column)
        frames = np.ascontiguousarray(np.transpose(_orient.from_display(data, xform), (2, 1, 0)))
    if frames.shape[0] != expected:
        raise LabelsWriteError(
            f"labels have {frames.shape[0]} planes but the source series {expected}: use a "
            "Labels layer made for this image"
        )
    return frames


def save_labels_dicom_seg(
    path: str | os.PathLike,
    labels: Any,
    *,
    medical: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
    segments: Mapping[Any, Any] | None = None,
) -> Path:
    """Save labels as a DICOM SEG file referencing the series they were drawn on.

    Parameters
    ----------
    path : str or os.PathLike
        Target ``.dcm`` file.
    labels : array-like of int
        Labels in the display orientation of the DICOM image layer (``(z, y, x)``, or
        ``(y, x)`` for a single slice).
    medical : mapping
        The image's ``layer.metadata["medical"]`` from :func:`napari_sam2.io.medical.dicom.read_dicom`.
    provenance : mapping, optional
        Its backend/model go into the SEG's ContentDescription (64 characters at most).
    segments : mapping, optional
        ``{label ID: name or {"label", "category", "type"}}`` (see
        :func:`napari_sam2.io.segment_codes.parse_segments`): segment labels and SNOMED CT
        codes. IDs left out are labelled ``"label <ID>"`` and coded *Tissue*.

    Raises
    ------
    ImportError
        highdicom is not installed (the message says how to install it).
    LabelsWriteError
        No label, labels not of the series' shape, or the source is not a DICOM series.
    SegmentSpecError
        A segment code in ``segments`` is unknown (a ValueError; nothing is written).
    """
    specs = parse_segments(segments)  # before any work: a bad code writes nothing
    if medical.get("dicomweb"):  # source_files are SOP Instance UIDs on a server
        raise LabelsWriteError(
            "this series was opened over DICOMweb: send its SEG with the PACS section, or "
            "save it with napari_sam2.io.dicomweb.save_seg (reads the source headers there)"
        )
    seg = segmentation_dataset(labels, medical=medical, provenance=provenance, segments=specs)
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def segmentation_dataset(
    labels: Any,
    *,
    medical: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
    segments: Mapping[Any, Any] | None = None,
    read_source=None,
    series_number: int = 9000,
):
    """The DICOM SEG of :func:`save_labels_dicom_seg` as a pydicom dataset (not saved).

    ``segments`` as in :func:`save_labels_dicom_seg`. ``read_source(key)`` returns the
    header of the source image ``key`` (an item of ``medical["source_files"]``); by default
    the file is read with pydicom. Each call makes a new SEG (new SOP Instance and Series
    UIDs) numbered ``series_number``.
    """
    specs = parse_segments(segments)
    hd = _highdicom()
    import pydicom

    if medical.get("format") != "dicom" or not medical.get("source_files"):
        raise LabelsWriteError(
            "DICOM SEG needs labels drawn on a DICOM series opened by napari-sam2"
        )
    if read_source is None:

        def read_source(key):
            return pydicom.dcmread(Path(key), stop_before_pixels=True)

    files = list(medical["source_files"])
    frames = _frames_in_source_order(labels, medical, len(files))
    ids = [int(i) for i in np.unique(frames) if i > 0]
    if not ids:
        raise LabelsWriteError("the labels are empty: no segment to write")
    lut = np.zeros(int(max(ids)) + 1, np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1)
    segment_map = lut[frames.astype(np.int64)]
    frame_numbers = medical.get("source_frames") or [None] * len(files)
    unique = list(dict.fromkeys(files))
    if len(unique) == 1 and frame_numbers[0] is not None:  # one multi-frame source image
        sources = [_with_type2(read_source(unique[0]))]
        count = int(sources[0].get("NumberOfFrames", 1))
        full = np.zeros((count, *segment_map.shape[1:]), segment_map.dtype)
        full[np.asarray(frame_numbers, int)] = segment_map
        segment_map = full
    elif any(f is not None for f in frame_numbers):
        raise LabelsWriteError(
            "DICOM SEG export of frames from several multi-frame files is not supported"
        )
    else:
        sources = [_with_type2(read_source(f)) for f in files]
    from pydicom.sr.codedict import codes

    from ..provenance import plugin_version

    algorithm = hd.AlgorithmIdentificationSequence(
        name="napari-sam2",
        version=plugin_version(),
        family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions = [
        _description(hd, n, label_id, specs.get(label_id), algorithm)
        for n, label_id in enumerate(ids, start=1)
    ]
    prov = dict(provenance or {})
    note = f"napari-sam2 {prov.get('backend', '')} {prov.get('model', '')}".strip()
    try:
        return _segmentation(hd, sources, segment_map, descriptions, note, series_number)
    except (ValueError, AttributeError, TypeError) as exc:  # highdicom's checks of the source
        raise LabelsWriteError(
            f"cannot write a DICOM SEG for this series: {exc} (save the labels as NIfTI instead)"
        ) from exc


def _description(hd, number: int, label_id: int, spec: SegmentSpec | None, algorithm):
    spec = spec or SegmentSpec(default_label(label_id))
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=spec.label[:64],
        segmented_property_category=hd.sr.CodedConcept(spec.category[1], spec.category[0],
                                                       spec.category[2]),
        segmented_property_type=hd.sr.CodedConcept(spec.type[1], spec.type[0], spec.type[2]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
        tracking_id=tracking_id(label_id),
        tracking_uid=hd.UID(),
    )


def _segmentation(hd, sources, segment_map, descriptions, note: str, series_number: int):
    from ..provenance import plugin_version

    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=segment_map,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="napari-sam2",
        manufacturer_model_name="napari-sam2",
        software_versions=plugin_version(),
        device_serial_number="0",
        content_description=note[:64],
        content_label="SAM2",
    )
