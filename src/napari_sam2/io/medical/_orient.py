"""Private: the display orientation shared by the NIfTI and DICOM readers and the writer.

Convention (documented in ``docs/medical.md``):

* napari **world** coordinates are DICOM/ITK **LPS patient coordinates in mm**, in the
  axis order ``(z, y, x) = (S, P, L)``: world z grows to the patient's head, y to the
  back, x to the patient's left. NIfTI/nibabel RAS coordinates are ``(R, A, S) =
  (-x, -y, z)``.
* The voxel axes are reordered and flipped (never resampled) to the orientation closest
  to ``(S, P, L)``: the slider walks inferior → superior, axial planes show anterior at
  the top and the patient's left on the right of the screen (radiological convention,
  as ITK-SNAP, 3D Slicer and PACS viewers show them).
* What remains of the voxel → world transform after that reordering (spacing, origin,
  and any oblique rotation) becomes the layer's ``scale``, ``translate`` and ``affine``.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

DISPLAY_AXCODES = ("S", "P", "L")
"""Voxel axis order of the displayed volume, as nibabel RAS axis codes."""

RAS_TO_WORLD = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
"""napari world ``(S, P, L)`` from RAS: ``world = RAS_TO_WORLD @ ras``."""

AXIS_LABELS = ("z", "y", "x")
_ROTATION_TOL = 1e-6


def display_ornt(vox2ras: np.ndarray) -> np.ndarray:
    """nibabel orientation transform from the file's voxel axes to the display axes."""
    return ornt_transform(io_orientation(vox2ras), axcodes2ornt(DISPLAY_AXCODES))


def to_display(data, vox2ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorder/flip the first three axes of ``data`` to the display orientation.

    Returns the display array (a view where possible), its voxel → RAS affine, and the
    orientation transform (for :func:`from_display`).
    """
    vox2ras = np.asarray(vox2ras, dtype=float)
    xform = display_ornt(vox2ras)
    shape = data.shape[:3]
    disp = apply_orientation(data, xform)
    disp_aff = vox2ras @ inv_ornt_aff(xform, shape)
    return disp, disp_aff, xform


def invert_ornt(xform) -> np.ndarray:
    """The orientation transform undoing ``xform`` (display → file voxel order)."""
    xform = np.asarray(xform, dtype=float)
    inverse = np.empty_like(xform)
    for source_axis, (display_axis, flip) in enumerate(xform):
        inverse[int(display_axis)] = (source_axis, flip)
    return inverse


def from_display(data: np.ndarray, xform) -> np.ndarray:
    """Undo :func:`to_display` on the first three axes (labels back to the file's order)."""
    return apply_orientation(data, invert_ornt(xform))


def layer_transform(disp_vox2ras: np.ndarray, extra_leading: int = 0) -> dict:
    """napari ``scale``/``translate``/``affine`` for a display-oriented volume.

    World = :data:`RAS_TO_WORLD` @ RAS. Axis-aligned volumes get ``scale`` (spacing)
    and ``translate`` (the first voxel's centre) only; oblique ones also an ``affine``
    holding the rotation and origin (``translate`` is then zero), so world coordinates
    stay scanner coordinates without resampling. ``extra_leading`` axes (time) get
    scale 1 and no rotation.
    """
    m = RAS_TO_WORLD @ np.asarray(disp_vox2ras, float)[:3, :3]
    origin = RAS_TO_WORLD @ np.asarray(disp_vox2ras, float)[:3, 3]
    spacing = np.linalg.norm(m, axis=0)
    rotation = m / spacing
    rotation[np.abs(rotation) < 1e-12] = 0.0  # float noise of the header's quaternion
    lead = extra_leading
    nd = 3 + lead
    out: dict = {
        "scale": (1.0,) * lead + tuple(float(s) for s in spacing),
        "translate": (0.0,) * nd,
    }
    if np.allclose(rotation, np.eye(3), atol=_ROTATION_TOL):
        out["translate"] = (0.0,) * lead + tuple(float(t) for t in origin)
        return out
    affine = np.eye(nd + 1)
    affine[lead:nd, lead:nd] = rotation
    affine[lead:nd, nd] = origin
    out["affine"] = affine
    return out


def world_to_ras_affine(layer_affine: np.ndarray) -> np.ndarray:
    """4×4 voxel → RAS affine from a napari data → world matrix of the 3 spatial axes."""
    layer_affine = np.asarray(layer_affine, float)
    inv = np.linalg.inv(RAS_TO_WORLD)
    out = np.eye(4)
    out[:3, :3] = inv @ layer_affine[:3, :3]
    out[:3, 3] = inv @ layer_affine[:3, 3]
    return out
