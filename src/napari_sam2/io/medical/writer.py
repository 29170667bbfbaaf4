"""Write labels as NIfTI that line up with the source scan in ITK-SNAP, 3D Slicer, nibabel.

The labels are put back into the **source file's voxel order** (the display reordering
of :mod:`napari_sam2.io.medical._orient` is undone) and written with the **source file's exact
affine** (sform and qform, with the source's codes), an unsigned integer dtype, intent
``label``, and the provenance record as a NIfTI ``comment`` extension (code 6, JSON)
that our reader restores into ``layer.metadata["napari_sam2"]``.

Where the source is known:

* ``layer.metadata["medical"]`` of a Labels layer opened by our NIfTI reader;
* otherwise, in napari, the image layer opened by our NIfTI/DICOM reader whose shape and
  transform the labels share (the widget's *New labels* copies both): napari's *Save*
  goes through :mod:`napari_sam2.adapter.medical_writers`, which finds it and passes it
  here (this module does not import napari);
* scripts pass ``medical=image_layer.metadata["medical"]`` to :func:`save_labels_nifti`.

Without a source the labels are written in display voxel order with the affine of the
layer's napari transform (still aligned in world coordinates), with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..dtypes import labels_dtype
from ..errors import LabelsWriteError
from ..provenance import provenance_to_json
from . import _orient
from .nifti import PROVENANCE_EXTENSION_CODE

__all__ = ["load_labels_nifti", "save_labels_nifti"]


def _to_source(data: np.ndarray, medical: Mapping[str, Any]) -> np.ndarray:
    """Labels in display order → the source file's voxel order and shape."""
    shape = tuple(int(s) for s in medical["source_shape"])
    xform = medical.get("display_ornt")
    if data.ndim == 2 and len(shape) == 3 and 1 in shape:
        data = data[None]  # a single plane shown as 2-D (one-slice DICOM)
    if data.ndim == 4:  # (t, z, y, x) → (z, y, x, t)
        data = np.moveaxis(data, 0, -1)
    if xform is not None:
        data = _orient.from_display(data, xform)
    if tuple(data.shape[:3]) != shape[:3]:
        raise LabelsWriteError(
            f"labels of shape {data.shape} do not match the source volume {shape}: "
            "use a Labels layer made for this image (the widget's 'New labels')"
        )
    return np.ascontiguousarray(data)


def save_labels_nifti(
    path: str | os.PathLike,
    labels: Any,
    *,
    medical: Mapping[str, Any] | None = None,
    world_affine: Any = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Save labels as ``.nii``/``.nii.gz`` aligned with their source scan.

    Parameters
    ----------
    path : str or os.PathLike
        Target file (``.nii`` or ``.nii.gz``).
    labels : array-like of int
        Labels in the display orientation of the image they were drawn on
        (``(z, y, x)``, ``(t, z, y, x)``, or ``(y, x)`` for a one-slice DICOM).
    medical : mapping, optional
        The source image's ``layer.metadata["medical"]`` (from our NIfTI/DICOM readers):
        ``source_affine``, ``source_shape``, ``display_ornt``.
    world_affine : array-like, optional
        Used only without ``medical``: the (ndim+1)² napari data → world matrix of the
        labels (LPS world); the file then keeps the display voxel order.
    provenance : mapping, optional
        Stored as a NIfTI comment extension (JSON).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    LabelsWriteError
        Non-integer or negative labels, or labels not of the source's shape.
    ValueError
        If neither ``medical`` nor ``world_affine`` is given, or the name is not NIfTI.
    """
    path = Path(os.fspath(path))
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path.name}: a NIfTI file name ends in .nii or .nii.gz")
    data = np.asarray(labels)
    dtype = labels_dtype(data)
    if medical is not None and medical.get("source_affine") is not None:
        affine = np.asarray(medical["source_affine"], dtype=float)
        out = _to_source(data, medical)
        sform_code = int(medical.get("sform_code", 1) or 0)
        qform_code = int(medical.get("qform_code", sform_code) or 0)
        if sform_code == 0 and qform_code == 0:
            sform_code = qform_code = 1
        qform = np.asarray(medical.get("qform_affine") or affine, dtype=float)
    elif world_affine is not None:
        matrix = np.asarray(world_affine, dtype=float)
        if data.ndim == 2 and matrix.shape == (3, 3):  # a 2-D image: one slice, 1 mm thick
            plane = np.eye(4)
            plane[1:3, 1:3], plane[1:3, 3] = matrix[:2, :2], matrix[:2, 2]
            matrix, data = plane, data[None]
        spatial = matrix[-4:, -4:] if matrix.shape[0] > 4 else matrix
        if data.ndim == 2:
            raise ValueError("2-D labels need a 3×3 world_affine to be placed in space")
        affine = _orient.world_to_ras_affine(np.c_[spatial[:3, :3], spatial[:3, 3]])
        out = np.moveaxis(data, 0, -1) if data.ndim == 4 else data
        sform_code = qform_code = 1
        qform = affine
        why = (
            "the source image has no patient geometry (radiograph, ultrasound...); labels "
            "are written on the pixel grid, with the pixel size"
            if medical is not None
            else "the source scan is unknown; labels are written in napari's display voxel "
            "order (aligned in scanner space, but not voxel for voxel with the original file)"
        )
        warnings.warn(
            f"{path.name}: {why}",
            UserWarning,
            stacklevel=2,
        )
    elif medical is not None:
        raise LabelsWriteError(
            "the source image has no patient geometry (no ImagePositionPatient/"
            "ImageOrientationPatient, e.g. a radiograph or ultrasound): pass world_affine= "
            "(the labels layer's data → world matrix) to write it on the pixel grid"
        )
    else:
        raise ValueError("save_labels_nifti needs the source's `medical` record or a world_affine")
    image = nib.Nifti1Image(out.astype(dtype, copy=False), affine)
    header = image.header
    header.set_data_dtype(dtype)
    header.set_xyzt_units("mm")
    if medical is not None:
        _keep_source_units(header, medical, out.ndim)
    header.set_intent("label")
    header["descrip"] = b"napari-sam2 labels"
    image.set_sform(affine, code=sform_code)
    image.set_qform(qform if qform_code else affine, code=qform_code)
    if provenance is not None:
        text = provenance_to_json(provenance).encode("utf-8")
        header.extensions.append(nib.nifti1.Nifti1Extension(PROVENANCE_EXTENSION_CODE, text))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def _keep_source_units(header, medical: Mapping[str, Any], ndim: int) -> None:
    """The source NIfTI's space/time units and, for 4-D labels, its time step (TR): the
    labels of a time series reopen with the same time scale as the scan."""
    units = medical.get("xyzt_units")
    if units:
        space, time = (str(u) for u in units)
        known = nib.nifti1.unit_codes.keys()
        header.set_xyzt_units(
            space if space in known else "mm", time if time in known else "unknown"
        )
    zooms = medical.get("source_zooms")
    if ndim == 4 and zooms and len(zooms) > 3 and float(zooms[3]) > 0:
        header.set_zooms((*header.get_zooms()[:3], float(zooms[3])))


def load_labels_nifti(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """(labels, provenance) of a labels NIfTI written by :func:`save_labels_nifti`, in
    the display orientation of the image they were drawn on (the reverse of the write:
    the source's voxel order is put back into display order with the recorded
    ``display_ornt``; a file written without a source is returned as stored)."""
    from nibabel.orientations import apply_orientation

    from .nifti import provenance_of

    img = nib.load(os.fspath(path))
    raw = np.asanyarray(img.dataobj)
    prov = provenance_of(img) or {}
    med = (prov.get("input") or {}).get("medical") or {}
    if med.get("source_affine") is not None and med.get("display_ornt") is not None:
        data = apply_orientation(raw, np.asarray(med["display_ornt"], float))
        if data.ndim == 4:
            data = np.moveaxis(data, 3, 0)
        if str(med.get("world", "")).startswith("acquisition plane"):
            data = data[0]  # one DICOM slice, shown as 2-D
    else:  # written in display order (no patient geometry)
        data = raw[0] if med.get("frames") == 1 and raw.ndim == 3 and raw.shape[0] == 1 else raw
    return np.asarray(data), prov
