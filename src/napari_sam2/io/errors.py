"""The typed errors of :mod:`napari_sam2.io` (a leaf module: it imports nothing).

Every reader raises an :class:`ImageReadError` for a file it cannot read, so a caller
(the CLI, batch, the widget) catches one type whatever the format; every one is also a
``ValueError``, as before.
"""

from __future__ import annotations


class ImageReadError(ValueError):
    """An image file cannot be read (unsupported kind, corrupt, truncated)."""


class UnsupportedFormatError(ImageReadError):
    """The file is none of the formats napari-sam2 reads (TIFF, NIfTI, DICOM)."""


class TiffReadError(ImageReadError):
    """A file that looks like a TIFF could not be read (corrupt, truncated, unsupported)."""


class NiftiReadError(ImageReadError):
    """The file is not a NIfTI volume nibabel can read."""


class DicomReadError(ImageReadError):
    """The DICOM data cannot be shown (no decoder, no image, inconsistent series)."""


class LabelsWriteError(ValueError):
    """Labels cannot be written without losing information."""
