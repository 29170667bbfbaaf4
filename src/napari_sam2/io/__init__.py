"""Microscopy TIFF input/output for napari-sam2: reader, labels writer, provenance,
object exports and sample data.

Nothing here imports napari or Qt, so the functions work in plain scripts::

    from napari_sam2.io import open_tiff, save_labels, load_labels, make_provenance
"""

from .exports import cutout_rgba, export_object_masks, save_cutout
from .provenance import (
    ProvenanceError,
    make_provenance,
    provenance_from_json,
    provenance_to_json,
)
from .reader import TiffInfo, TiffReadError, get_reader, open_tiff, read_tiff
from .samples import sample_path
from .writer import LabelsWriteError, load_labels, save_labels, write_labels

__all__ = [
    "LabelsWriteError",
    "ProvenanceError",
    "TiffInfo",
    "TiffReadError",
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
