"""Per-object measurements of a labels array: volume, area per plane, bounding-box extent.

numpy in, table out; no napari.  The caller gives the physical size of a voxel: the
step along each axis (``spacing``), the axes' ``units`` and, for an oblique grid, the
volume of one voxel (``voxel_volume``: ``|det|`` of the 3x3 linear part of the
voxel-to-world affine, which the product of the steps over-estimates when the axes are
not orthogonal).

Volumes of objects measured in mm (or cm) are given in mL (1 mL = 1000 mm³ = 1 cm³); in
other units as that unit cubed (``um3``, ``nm3``; ``px3`` without physical units).
Column names are ASCII so the CSV opens anywhere: ``volume_mL``, ``area_mm2``,
``extent_z_mm``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import LabelsError

# unit spellings (napari/pint names, NIfTI/OME short names) -> (short name, power of ten
# of a metre: exact factors between units)
_LENGTHS = {
    "m": ("m", 0),
    "meter": ("m", 0),
    "metre": ("m", 0),
    "cm": ("cm", -2),
    "centimeter": ("cm", -2),
    "centimetre": ("cm", -2),
    "mm": ("mm", -3),
    "millimeter": ("mm", -3),
    "millimetre": ("mm", -3),
    "um": ("um", -6),
    "µm": ("um", -6),
    "μm": ("um", -6),
    "micrometer": ("um", -6),
    "micrometre": ("um", -6),
    "micron": ("um", -6),
    "nm": ("nm", -9),
    "nanometer": ("nm", -9),
    "nanometre": ("nm", -9),
}
PIXEL = "px"
_UNIT3_PER_ML = {"mm": 1000.0, "cm": 1.0}  # volumes in these units are given in mL
SPATIAL_NAMES = ("z", "y", "x")


def length_unit(unit) -> str:
    """The short name of a length unit (``"millimeter"`` -> ``"mm"``); ``"px"`` for pixel
    units, None, empty or anything that is not a length (seconds, for instance)."""
    text = str(unit or "").strip()
    found = _LENGTHS.get(text) or _LENGTHS.get(text.lower())
    return found[0] if found else PIXEL


@dataclass(frozen=True)
class Measurements:
    """Per-object rows (:attr:`columns`/:attr:`rows`) and per-plane areas
    (:attr:`plane_columns`/:attr:`plane_rows`, 3-D labels only)."""

    columns: tuple[str, ...]
    rows: list[tuple]
    plane_columns: tuple[str, ...] = ()
    plane_rows: list[tuple] = field(default_factory=list)
    unit: str = PIXEL  # the length unit of every physical column

    def __len__(self) -> int:
        return len(self.rows)

    def as_dicts(self) -> list[dict]:
        """One dict per object, keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-object table; returns the path."""
        return _write_csv(path, self.columns, self.rows)

    def planes_to_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-plane areas (label, plane, pixels, area); returns the path."""
        return _write_csv(path, self.plane_columns, self.plane_rows)


def _write_csv(path, columns, rows) -> Path:
    path = Path(os.fspath(path))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def _per_axis(value, n: int, name: str, default) -> tuple:
    if value is None:
        return (default,) * n
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise LabelsError(f"{name} has {len(value)} values for {n} axes")
    return value


def _physical(spacing, units) -> tuple[tuple[float, ...], str]:
    """Steps in one common length unit (the last axis's; pixels if any axis has none)."""
    steps = [float(s) for s in spacing]
    if any(not math.isfinite(s) or s <= 0 for s in steps):
        raise LabelsError(f"spacing must be positive and finite, got {tuple(spacing)}")
    shorts = [length_unit(u) for u in units]
    if PIXEL in shorts:
        return tuple(steps), PIXEL
    ref = shorts[-1]
    to_ref = [_factor(u, ref) for u in shorts]
    return tuple(s * f for s, f in zip(steps, to_ref, strict=True)), ref


def _factor(unit: str, ref: str) -> float:
    """How many ``ref`` make one ``unit`` (exact powers of ten)."""
    return 10.0 ** (_LENGTHS[unit][1] - _LENGTHS[ref][1])


def _volume_unit(unit: str) -> tuple[str, float]:
    if unit in _UNIT3_PER_ML:
        return "mL", _UNIT3_PER_ML[unit]
    return f"{unit}3", 1.0


def measure_labels(
    labels,
    spacing=None,
    units=None,
    *,
    voxel_volume: float | None = None,
    axis_names: Sequence[str] | None = None,
    time_axis: int | None = None,
) -> Measurements:
    """Measure every object (label > 0) of a 2-D or 3-D labels array.

    Parameters
    ----------
    labels : array of int
        2-D (Y, X) or 3-D (Z, Y, X) labels; with ``time_axis`` one more axis, measured
        per time point.
    spacing : float or sequence of float, optional
        Step along each axis of ``labels`` (the time axis's step is ignored); default 1.
    units : str or sequence of str, optional
        Length unit of each axis (``"mm"``, ``"micrometer"`` …); default pixels.
    voxel_volume : float, optional
        Physical volume of one voxel (area of one pixel for 2-D labels) in ``units``;
        default the product of the steps.  Give ``|det|`` of the linear part for an
        oblique grid.
    axis_names : sequence of str, optional
        Names of the spatial axes in the extent columns; default z, y, x.
    time_axis : int, optional
        An axis of time points: one row per object and time point, with a ``t`` column.

    Returns
    -------
    Measurements
        Columns ``label``, ``voxels`` (``pixels`` in 2-D), ``volume_<unit>`` (3-D) or
        ``area_<unit>2`` (2-D), ``planes`` and ``max_area_<unit>2`` (3-D), and
        ``extent_<axis>_<unit>`` per spatial axis; plane rows (3-D): label, plane,
        pixels, area.

    Raises
    ------
    LabelsError
        Non-integer labels, not 2-D/3-D spatially, or spacing/units/voxel volume that do
        not fit.
    """
    lab = np.asarray(labels)
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise LabelsError(f"labels must be integers, got {lab.dtype}")
    spacing = _per_axis(spacing, lab.ndim, "spacing", 1.0)
    units = _per_axis(units, lab.ndim, "units", None)
    if time_axis is not None:
        t = int(time_axis) % lab.ndim
        keep = [i for i in range(lab.ndim) if i != t]
        spacing = tuple(spacing[i] for i in keep)
        units = tuple(units[i] for i in keep)
        parts = [
            _measure_spatial(np.take(lab, k, axis=t), spacing, units, voxel_volume, axis_names)
            for k in range(lab.shape[t])
        ]
        first = parts[0]
        return Measurements(
            ("t", *first.columns),
            [(k, *row) for k, m in enumerate(parts) for row in m.rows],
            ("t", *first.plane_columns) if first.plane_columns else (),
            [(k, *row) for k, m in enumerate(parts) for row in m.plane_rows],
            first.unit,
        )
    return _measure_spatial(lab, spacing, units, voxel_volume, axis_names)


def _measure_spatial(lab, spacing, units, voxel_volume, axis_names) -> Measurements:
    nd = lab.ndim
    if nd not in (2, 3):
        raise LabelsError(f"labels must be 2-D or 3-D (one more axis with time_axis), got {nd}-D")
    steps, unit = _physical(spacing, units)
    names = tuple(axis_names) if axis_names is not None else SPATIAL_NAMES[-nd:]
    if len(names) != nd:
        raise LabelsError(f"axis_names has {len(names)} names for {nd} spatial axes")
    scale = 1.0  # voxel_volume given in the caller's units -> the common unit
    if unit != PIXEL:
        scale = math.prod(_factor(length_unit(u), unit) for u in units)
    voxel = float(math.prod(steps)) if voxel_volume is None else float(voxel_volume) * scale
    if not math.isfinite(voxel) or voxel <= 0:
        raise LabelsError(f"voxel_volume must be positive and finite, got {voxel_volume}")
    pixel_area = steps[-2] * steps[-1]
    area = f"area_{unit}2"
    extents = tuple(f"extent_{n}_{unit}" for n in names)
    if nd == 2:
        columns = ("label", "pixels", area, *extents)
        plane_columns: tuple[str, ...] = ()
    else:
        vol_name, per_vol = _volume_unit(unit)
        columns = (
            "label",
            "voxels",
            f"volume_{vol_name}",
            "planes",
            f"max_area_{unit}2",
            *extents,
        )
        plane_columns = ("label", "plane", "pixels", area)
    rows, plane_rows = [], []
    as_int = lab if lab.dtype != bool else lab.astype(np.uint8)
    for index, box in enumerate(ndimage.find_objects(as_int)):
        if box is None:
            continue
        lid = index + 1
        mask = as_int[box] == lid
        count = int(mask.sum())
        ext = tuple(float((s.stop - s.start) * st) for s, st in zip(box, steps, strict=True))
        if nd == 2:
            rows.append((lid, count, count * voxel, *ext))
            continue
        per_plane = mask.reshape(mask.shape[0], -1).sum(axis=1)
        for k, n in enumerate(per_plane):
            if n:
                plane_rows.append((lid, box[0].start + k, int(n), int(n) * pixel_area))
        planes = int(np.count_nonzero(per_plane))
        max_area = int(per_plane.max()) * pixel_area
        rows.append((lid, count, count * voxel / per_vol, planes, max_area, *ext))
    return Measurements(tuple(columns), rows, plane_columns, plane_rows, unit)
