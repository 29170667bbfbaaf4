"""File input/output for napari-sam2, by format family, without napari or Qt:

* :mod:`~napari_sam2.io.formats`: the one registry of formats (which file is TIFF,
  NIfTI or DICOM; ``read_image`` for any of them; which labels file a name asks for);
* :mod:`~napari_sam2.io.tiff`: microscopy TIFF / OME-TIFF / ImageJ reader and the
  labels TIFF writer (voxel size, axes, provenance);
* :mod:`~napari_sam2.io.medical`: NIfTI and DICOM readers in patient geometry, labels
  as NIfTI aligned with the source scan or as DICOM SEG, CT/MR windows;
* :mod:`~napari_sam2.io.exports`: object masks, cut-outs, object tables and tracks;
* :mod:`~napari_sam2.io.provenance`, :mod:`~napari_sam2.io.samples`, :mod:`~napari_sam2.io.errors`.

The functions work in plain scripts::

    from napari_sam2.io import open_tiff, save_labels, load_labels, make_provenance
"""

from .errors import ImageReadError, LabelsWriteError, TiffReadError, UnsupportedFormatError
from .exports.objects import cutout_rgba, export_object_masks, save_cutout
from .provenance import (
    ProvenanceError,
    make_provenance,
    provenance_from_json,
    provenance_to_json,
)
from .samples import sample_path
from .tiff.reader import TiffInfo, get_reader, open_tiff, read_tiff
from .tiff.writer import load_labels, save_labels, write_labels

__all__ = [
    "ImageReadError",
    "LabelsWriteError",
    "ProvenanceError",
    "TiffInfo",
    "TiffReadError",
    "UnsupportedFormatError",
    "cutout_rgba",
    "export_object_masks",
    "get_reader",
    "load_labels",
    "make_provenance",
    "open_tiff",
    "provenance_from_json",
    "provenance_to_json",
    "read_tiff",
    "sample_path",
    "save_cutout",
    "save_labels",
    "write_labels",
]
