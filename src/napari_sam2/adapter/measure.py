"""Measure the objects of a Labels layer in physical units (its own scale, units, affine).

The voxel size is read from the layer's whole data-to-world transform (scale, rotate,
shear, affine): the step along each axis is the length of that axis's column of the
linear part, and the volume of a voxel ``|det|`` of the spatial block (exact for oblique
medical grids, where the product of the steps would be too large).  An axis labelled as
time (``t``, ``time``, ``frame`` …) or with a time unit is measured per time point; with
four or more axes and no such label, the first one is taken as time.  The units are the
layer's (napari ``units``; the medical readers set mm); a layer without physical units
is measured in pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from ..engine.errors import LabelsError
from ..engine.measure import Measurements, length_unit, measure_labels
from .propagate import axis_kind

_TIME_UNITS = ("second", "minute", "hour", "millisecond", "s", "ms", "min", "h")


def _linear_part(layer) -> np.ndarray:
    """Columns: the world step of one data step along each axis of ``layer``."""
    nd = layer.ndim
    origin = np.asarray(layer.data_to_world(np.zeros(nd)), float)
    eye = np.eye(nd)
    return np.stack(
        [np.asarray(layer.data_to_world(eye[i]), float) - origin for i in range(nd)], axis=1
    )


def time_axis_of(layer) -> int | None:
    """The layer's time axis: labelled or with a time unit; else the first of 4+ axes."""
    labels = [str(a) for a in getattr(layer, "axis_labels", ())]
    units = [str(u) for u in getattr(layer, "units", ())]
    for i in range(layer.ndim):
        if (i < len(labels) and axis_kind(labels[i]) == "t") or (
            i < len(units) and units[i] in _TIME_UNITS
        ):
            return i
    return 0 if layer.ndim >= 4 else None


def layer_voxel_size(layer) -> dict:
    """Keyword arguments of :func:`~napari_sam2.engine.measure.measure_labels` for
    ``layer``: ``spacing``, ``units``, ``voxel_volume`` (oblique grids only),
    ``axis_names`` and ``time_axis``."""
    nd = layer.ndim
    t = time_axis_of(layer)
    spatial = [i for i in range(nd) if i != t]
    lin = _linear_part(layer)
    steps = [float(np.linalg.norm(lin[:, i])) for i in range(nd)]
    block = lin[np.ix_(spatial, spatial)]
    oblique = np.any(block - np.diag(np.diag(block)))
    units = [str(u) for u in getattr(layer, "units", ())] or ["pixel"] * nd
    labels = [str(a) for a in getattr(layer, "axis_labels", ())]
    names = [labels[i] for i in spatial] if len(labels) == nd else []
    if not names or any(n.lstrip("-").isdigit() for n in names):  # napari's "-1", "-2" …
        names = list(("z", "y", "x")[-len(spatial) :]) if len(spatial) <= 3 else None
    return {
        "spacing": tuple(steps),
        "units": tuple(units),
        "voxel_volume": float(abs(np.linalg.det(block))) if oblique else None,
        "axis_names": tuple(names) if names else None,
        "time_axis": t,
    }


def measure_job(labels_layer) -> Callable[[], Measurements]:
    """Read the layer's voxel size now (main thread); the returned function measures its
    data (seconds for a large volume: run it in a worker).

    Raises
    ------
    LabelsError
        No layer, or one that is not 2-D or 3-D in space (plus an optional time axis).
    """
    if labels_layer is None:
        raise LabelsError("No Labels layer chosen: nothing to measure.")
    kwargs = layer_voxel_size(labels_layer)
    spatial = labels_layer.ndim - (kwargs["time_axis"] is not None)
    if spatial not in (2, 3):
        raise LabelsError(
            f"'{labels_layer.name}' has {spatial} spatial axes: only 2-D and 3-D labels "
            "(with an optional time axis) can be measured"
        )
    data = labels_layer.data[0] if labels_layer.multiscale else labels_layer.data
    return partial(measure_labels, data, **kwargs)


def measure_layer(labels_layer) -> Measurements:
    """The measurement table of a Labels layer (see :func:`layer_voxel_size`).

    Raises
    ------
    LabelsError
        As :func:`measure_job`.
    """
    return measure_job(labels_layer)()


def describe_units(m: Measurements) -> str:
    """A short note on the units of a table, for the GUI."""
    if m.unit == length_unit(None):
        return "no physical size: sizes in pixels"
    return f"sizes in {m.unit}" + (", volumes in mL" if m.unit in ("mm", "cm") else "")
