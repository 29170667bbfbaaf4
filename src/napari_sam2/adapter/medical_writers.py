"""napari's *Save* for Labels as NIfTI or DICOM SEG (the npe2 writer contributions).

napari hands a writer only the layer's data and attributes.  When the Labels layer does
not carry the source scan's record itself (``metadata["medical"]``), the source is the
open image layer, read by our NIfTI/DICOM readers, whose shape and transform the labels
share (the widget's *New labels* copies both).  Finding it needs the viewer, so it happens
here; :mod:`napari_sam2.io.medical` then writes from plain data and never imports napari.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..io.errors import LabelsWriteError
from ..io.medical.dicom_seg import save_labels_dicom_seg
from ..io.medical.writer import save_labels_nifti
from ..io.provenance import make_provenance

__all__ = ["source_record", "transform_matrix", "write_labels_dicom_seg", "write_labels_nifti"]

_GEOMETRY = ("scale", "translate", "rotate", "shear", "affine")


def transform_matrix(state: Mapping[str, Any], ndim: int) -> np.ndarray:
    """napari data → world matrix from layer attributes (scale, translate, rotate, shear,
    affine), as napari composes them."""
    from napari.utils.transforms import Affine

    linear = Affine(
        scale=state.get("scale"),
        translate=state.get("translate"),
        rotate=state.get("rotate"),
        shear=state.get("shear"),
        ndim=ndim,
    )
    extra = state.get("affine")
    extra = (
        np.eye(ndim + 1) if extra is None else np.asarray(getattr(extra, "affine_matrix", extra))
    )
    return extra @ linear.affine_matrix


def source_record(shape: tuple, matrix: np.ndarray, layers=None) -> Mapping | None:
    """The ``medical`` record of the open image whose shape and data → world ``matrix``
    the labels share (``layers``: default, the current viewer's), or None when there is
    none or several disagreeing ones."""
    if layers is None:
        import napari

        viewer = napari.current_viewer()
        if viewer is None:
            return None
        layers = viewer.layers
    found = []
    for layer in layers:
        medical = layer.metadata.get("medical") if isinstance(layer.metadata, dict) else None
        if not medical or layer.data is None:
            continue
        if not (medical.get("source_affine") or medical.get("source_files")):
            continue
        if tuple(np.shape(layer.data)[: layer.ndim]) != shape:
            continue
        other = transform_matrix({k: getattr(layer, k) for k in _GEOMETRY}, layer.ndim)
        if other.shape == matrix.shape and np.allclose(other, matrix, atol=1e-6):
            found.append(medical)
    if not found:
        return None
    first = found[0]
    same = all(
        np.array_equal(m.get("source_affine"), first.get("source_affine"))
        and m.get("source_files") == first.get("source_files")
        and m.get("display_ornt") == first.get("display_ornt")
        for m in found
    )
    return first if same else None


def _labels(data: Any) -> np.ndarray:
    return np.asarray(data[0] if isinstance(data, list) else data)  # multiscale: level 0


def write_labels_nifti(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer contribution: a Labels layer → NIfTI aligned with its source scan."""
    data = _labels(data)
    metadata = attributes.get("metadata") or {}
    matrix = transform_matrix(attributes, data.ndim)
    medical = metadata.get("medical") or source_record(data.shape, matrix)
    provenance = metadata.get("napari_sam2")
    if provenance is None:
        provenance = make_provenance(source="napari Labels layer without napari-sam2 provenance")
    written = save_labels_nifti(
        path,
        data,
        medical=medical,
        world_affine=None if medical and medical.get("source_affine") is not None else matrix,
        provenance=provenance,
    )
    return [str(written)]


def write_labels_dicom_seg(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer contribution: a Labels layer drawn on a DICOM series → DICOM SEG."""
    data = _labels(data)
    metadata = attributes.get("metadata") or {}
    medical = metadata.get("medical") or source_record(
        data.shape, transform_matrix(attributes, data.ndim)
    )
    if not medical:
        raise LabelsWriteError(
            "no DICOM series found for these labels: open the series with napari-sam2 and "
            "make the Labels layer for it (the widget's 'New labels')"
        )
    written = save_labels_dicom_seg(
        path,
        data,
        medical=medical,
        provenance=metadata.get("napari_sam2"),
        segments=metadata.get("segments"),  # the 'Segment names…' dialog's names and codes
    )
    return [str(written)]
