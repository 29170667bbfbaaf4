"""Read NIfTI volumes (``.nii``, ``.nii.gz``) with nibabel, in their real geometry.

The volume is shown in the display orientation of :mod:`napari_sam2.io.medical._orient`: voxel
axes reordered/flipped (never resampled) to the closest ``(S, P, L)`` order, world
coordinates = LPS scanner coordinates in mm, axial planes in radiological convention.
Spacing becomes ``scale``, the first voxel's position ``translate``; an oblique affine's
rotation stays in the layer's ``affine``. 4-D files (time series or components) get a
leading axis ``t``.

Everything the labels writer needs to write back in the file's own voxel order and
affine is kept in ``layer.metadata["medical"]`` (affine, shape, orientation transform,
file name: no header text, so nothing patient-identifying).

Integer volumes that carry our provenance extension, or whose name says they are labels
(``*_labels``, ``*_seg``, ``*_mask``, ``*-label``), open as a Labels layer.
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import NiftiReadError
from ..provenance import ProvenanceError, provenance_from_json
from ..suffixes import NIFTI_SUFFIXES, stem
from . import _orient
from .windowing import looks_like_hu, preset_limits, robust_limits

__all__ = [
    "PROVENANCE_EXTENSION_CODE",
    "NiftiReadError",
    "get_reader",
    "is_nifti_name",
    "open_nifti",
    "provenance_of",
    "read_nifti",
]

PROVENANCE_EXTENSION_CODE = 6  # NIfTI "comment" extension
_LABEL_NAME = re.compile(r"([_\-.](labels?|seg|segmentation|mask|masks|annotation))$", re.I)
_TIME_UNITS = {"sec": "s", "msec": "ms", "usec": "us", "hz": "Hz", "ppm": "ppm"}


def is_nifti_name(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(NIFTI_SUFFIXES)


def get_reader(path: str | list[str]):
    """npe2 reader contribution: a reader for ``.nii``/``.nii.gz`` files, else None."""
    if isinstance(path, (list, tuple)):
        return None
    candidate = Path(os.fspath(path))
    if not is_nifti_name(candidate) or not candidate.is_file():
        return None
    return partial(_napari_reader)


def _napari_reader(path: str) -> list[tuple]:
    return read_nifti(path)


def _load(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad files
        raise NiftiReadError(f"cannot read {path.name} as NIfTI: {exc}") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NiftiReadError(f"{path.name} is not a NIfTI image ({type(img).__name__})")
    return img


def provenance_of(img) -> dict | None:
    """Our provenance record in a loaded NIfTI image's comment extension, or None."""
    for ext in img.header.extensions:
        if ext.get_code() != PROVENANCE_EXTENSION_CODE:
            continue
        try:
            return provenance_from_json(ext.get_content())
        except ProvenanceError:
            continue
    return None


def _scaled_voxels(img) -> np.ndarray:
    """The voxels with ``scl_slope``/``scl_inter`` applied, in the smallest exact type.

    nibabel returns float64 for any scaled file; a CT stored as int16 with slope 1 and
    intercept -1024 (Hounsfield units) stays an integer array (int16 when the range
    fits, else int32), as the DICOM reader does: 4× less memory and exact HU.
    """
    proxy = img.dataobj
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    scaled = slope != 1.0 or inter != 0.0
    on_disk = np.dtype(img.get_data_dtype())
    if not (
        scaled
        and on_disk.kind in "iu"
        and np.isfinite([slope, inter]).all()
        and float(slope).is_integer()
        and float(inter).is_integer()
    ):
        return np.asanyarray(proxy)
    raw = np.asanyarray(proxy.get_unscaled())
    if raw.size == 0:
        return raw.astype(np.float32)
    stored = np.array([raw.min(), raw.max()], dtype=np.float64)
    ends = np.concatenate([stored, stored * slope + inter])
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= ends.min() and ends.max() <= info.max:  # no overflow on the way
            out = raw.astype(dtype)
            if slope != 1.0:
                out *= dtype(slope)
            out += dtype(inter)
            return out
    return np.asanyarray(proxy)


def _squeeze_extra(data: np.ndarray) -> np.ndarray:
    """Drop singleton axes after the third; more than one non-singleton extra axis is an error."""
    while data.ndim > 4 and 1 in data.shape[3:]:
        axis = 3 + data.shape[3:].index(1)
        data = np.squeeze(data, axis=axis)
    while data.ndim < 3:
        data = data[..., None]
    return data


def open_nifti(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Open a NIfTI file in display orientation, without napari.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file (NIfTI-1 or NIfTI-2).

    Returns
    -------
    data : numpy.ndarray
        ``(z, y, x)`` or ``(t, z, y, x)`` in the display orientation (see the module
        docstring); scaled by the header's ``scl_slope``/``scl_inter`` when present
        (an integer file with integer slope and intercept, like CT in Hounsfield units,
        stays an integer array: int16 or int32; other scaled files are float64).
    info : dict
        ``transform`` (napari ``scale``/``translate``[/``affine``] keywords),
        ``axis_labels``, ``units``, ``medical`` (the record kept in the layer metadata)
        and ``provenance`` (our extension's record, or None).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    NiftiReadError
        If nibabel cannot read it, or it has more than 4 non-singleton dimensions.
    """
    path = Path(os.fspath(path))
    img = _load(path)
    try:
        raw = _scaled_voxels(img)
    except Exception as exc:
        raise NiftiReadError(f"cannot read the voxels of {path.name}: {exc}") from exc
    data = _squeeze_extra(raw)
    if data.ndim > 4:
        raise NiftiReadError(
            f"{path.name} has shape {raw.shape}: only 3-D and 4-D volumes can be shown"
        )
    affine = np.asarray(img.affine, dtype=float)
    disp, disp_aff, xform = _orient.to_display(data, affine)
    lead = disp.ndim - 3
    if lead:
        disp = np.moveaxis(disp, 3, 0)
    transform = _orient.layer_transform(disp_aff, extra_leading=lead)
    space_unit, time_unit = img.header.get_xyzt_units()
    units = ["mm"] * 3
    if space_unit == "meter":
        units = ["m"] * 3
    elif space_unit == "micron":
        units = ["um"] * 3
    labels = list(_orient.AXIS_LABELS)
    if lead:
        zooms = img.header.get_zooms()
        step = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else 1.0
        transform["scale"] = (step, *transform["scale"][1:])
        units = [_TIME_UNITS.get(str(time_unit), "pixel"), *units]
        labels = ["t", *labels]
    medical = {
        "format": "nifti",
        "file": path.name,
        "source_affine": affine.tolist(),
        "source_shape": [int(s) for s in data.shape],
        "display_ornt": np.asarray(xform).tolist(),
        "display_affine_ras": np.asarray(disp_aff).tolist(),
        "world": "LPS (z, y, x) = (S, P, L), mm",
        "sform_code": int(img.header["sform_code"]),
        "qform_code": int(img.header["qform_code"]),
        "qform_affine": np.asarray(img.header.get_qform()).tolist(),
        "source_zooms": [float(z) for z in img.header.get_zooms()],
        "xyzt_units": [str(space_unit), str(time_unit)],
    }
    info = {
        "transform": transform,
        "axis_labels": tuple(labels),
        "units": tuple(units),
        "medical": medical,
        "provenance": provenance_of(img),
        "name": stem(path),
    }
    return disp, info


def _is_labels(data: np.ndarray, info: dict) -> bool:
    if not np.issubdtype(data.dtype, np.integer) or data.ndim not in (3, 4):
        return False
    return info["provenance"] is not None or bool(_LABEL_NAME.search(info["name"]))


def read_nifti(path: str | os.PathLike) -> list[tuple]:
    """Read a NIfTI file into one napari LayerData tuple (image, or labels).

    See :func:`open_nifti` for the geometry. Images get a gray colormap. A volume in
    Hounsfield units (CT, :func:`~napari_sam2.io.medical.windowing.looks_like_hu`) opens with the
    soft tissue window (W 400 / L 40), and ``metadata["medical"]`` says ``units`` HU and
    ``modality`` CT (``modality_inferred`` True), so the window panel lists the CT presets
    first; any other image gets robust (0.5, 99.5) percentile contrast limits.
    """
    data, info = open_nifti(path)
    kwargs: dict[str, Any] = {
        "name": info["name"],
        **info["transform"],
        "axis_labels": info["axis_labels"],
        "units": info["units"],
        "metadata": {"medical": info["medical"]},
    }
    if _is_labels(data, info):
        if info["provenance"] is not None:
            kwargs["metadata"]["napari_sam2"] = info["provenance"]
        return [(data, kwargs, "labels")]
    kwargs["colormap"] = "gray"
    if looks_like_hu(data):
        kwargs["metadata"]["medical"].update(units="HU", modality="CT", modality_inferred=True)
        kwargs["contrast_limits"] = list(preset_limits("soft tissue"))
    else:
        kwargs["contrast_limits"] = robust_limits(data)
    return [(data, kwargs, "image")]
