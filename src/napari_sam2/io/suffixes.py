"""File-name knowledge shared by every reader and writer (a leaf module: it imports
nothing of napari-sam2, so the TIFF and medical readers use it without a cycle through
:mod:`napari_sam2.io.formats`, which builds on it)."""

from __future__ import annotations

from pathlib import Path

TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm",)
IMAGE_SUFFIXES = TIFF_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES
"""The names :func:`napari_sam2.io.formats.read_image` recognises without looking inside
(DICOM files and folders without a ``.dcm`` name are found by their DICM preamble)."""


def suffix(path: str | Path) -> str:
    """The image suffix of a name, lower case (``a.OME.TIF`` → ``.ome.tif``, ``b.nii.gz`` →
    ``.nii.gz``); for other names the last suffix (``c.png`` → ``.png``, ``d`` → ``""``)."""
    path = Path(path)
    low = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if low.endswith(s)), path.suffix.lower())


def stem(path: str | Path) -> str:
    """File name without its image suffix (``a.ome.tif`` → ``a``, ``b.nii.gz`` → ``b``,
    ``c.png`` → ``c``)."""
    path = Path(path)
    suf = suffix(path)
    return path.name[: -len(suf)] if suf and path.name.lower().endswith(suf) else path.name
