"""Read a DICOM SEG back as a labels array on the grid of its source series (highdicom).

The reverse of :func:`napari_sam2.io.medical.dicom_seg.save_labels_dicom_seg`: each frame
of the SEG is found by the source image (and frame) it references, the segments are
combined into one array, and the array is put into the display orientation of the source
series as napari-sam2's DICOM reader shows it (``medical["display_ornt"]``).  A segment
labelled ``label <ID>`` (what napari-sam2 writes) gets that ID back; any other segment
keeps its segment number.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageReadError

__all__ = ["is_dicom_seg", "load_labels_dicom_seg"]

_OUR_LABEL = re.compile(r"^label (\d+)$")
HIGHDICOM_MISSING = (
    "reading a DICOM SEG needs highdicom: pip install 'napari-sam2[medical-seg]' "
    "(or pip install highdicom)"
)


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM file of modality SEG (headers only are read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(os.fspath(path), stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # noqa: BLE001 - not DICOM at all
        return False
    return str(ds.get("Modality", "")) == "SEG"


def _segment_ids(seg) -> np.ndarray:
    """Look-up table: segment number → label ID."""
    numbers = list(seg.segment_numbers)
    lut = np.zeros(max(numbers, default=0) + 1, np.int64)
    for n in numbers:
        found = _OUR_LABEL.match(str(seg.get_segment_description(n).SegmentLabel))
        lut[n] = int(found.group(1)) if found else n
    return lut


def _frames(seg, medical: Mapping[str, Any]) -> np.ndarray:
    """(frame, row, column) segment numbers in the order of ``medical["source_files"]``."""
    import pydicom

    files = [Path(p) for p in medical["source_files"]]
    frame_numbers = medical.get("source_frames") or [None] * len(files)
    unique = list(dict.fromkeys(files))
    if len(unique) == 1 and frame_numbers[0] is not None:  # one multi-frame source image
        uid = pydicom.dcmread(unique[0], stop_before_pixels=True).SOPInstanceUID
        return seg.get_pixels_by_source_frame(
            source_sop_instance_uid=uid,
            source_frame_numbers=[int(n) + 1 for n in frame_numbers],
            combine_segments=True,
            assert_missing_frames_are_empty=True,
        )
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        combine_segments=True,
        assert_missing_frames_are_empty=True,
    )


def load_labels_dicom_seg(path: str | os.PathLike, medical: Mapping[str, Any]) -> np.ndarray:
    """The labels of a DICOM SEG, on the grid of its source series, display orientation.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM SEG file (BINARY or FRACTIONAL with 0/1 values, non-overlapping segments).
    medical : mapping
        The source image's ``metadata["medical"]`` (or ``Image.extra["medical"]`` of
        :func:`napari_sam2.io.formats.read_image`) from napari-sam2's DICOM reader.

    Returns
    -------
    numpy.ndarray of int32
        ``(z, y, x)`` like the source image (``(y, x)`` for a one-slice image shown 2-D).

    Raises
    ------
    ImportError
        highdicom is not installed.
    ImageReadError
        Not a SEG, a SEG of another series, or overlapping segments.
    """
    try:
        import highdicom as hd
    except ImportError as exc:
        raise ImportError(HIGHDICOM_MISSING) from exc
    from . import _orient

    path = Path(os.fspath(path))
    if medical.get("format") != "dicom" or not medical.get("source_files"):
        raise ImageReadError(f"{path.name}: a DICOM SEG is read onto a DICOM series")
    try:
        seg = hd.seg.segread(path)
        frames = _frames(seg, medical)
    except (ValueError, KeyError, RuntimeError, AttributeError) as exc:
        raise ImageReadError(
            f"cannot read {path.name} as a DICOM SEG of this series: {exc}"
        ) from exc
    labels = _segment_ids(seg)[np.asarray(frames, np.int64)].astype(np.int32)
    xform = medical.get("display_ornt")
    if xform is not None:  # (slice, row, column) → source (column, row, slice) → display
        labels = np.ascontiguousarray(
            _orient.apply_orientation(np.transpose(labels, (2, 1, 0)), np.asarray(xform))
        )
    if str(medical.get("world", "")).startswith("acquisition plane") and labels.shape[0] == 1:
        labels = labels[0]  # one slice shown as 2-D
    return labels
