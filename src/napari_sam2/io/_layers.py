"""Private: build napari LayerData tuples from an array and its TiffInfo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .reader import TiffInfo

# Colormaps by channel name fragments (checked in order, case-insensitive).
_NAME_COLORMAPS = (
    (("dapi", "hoechst", "405", "bfp"), "blue"),
    (("gfp", "fitc", "488", "470", "alexa 488", "yfp"), "green"),
    (("cy5", "640", "647", "far red", "far-red"), "red"),
    (("rfp", "mcherry", "tritc", "cy3", "555", "561", "568", "594", "tdtomato"), "magenta"),
)
_MAGENTA_GREEN = ("magenta", "green")
_CMYBGR = ("cyan", "magenta", "yellow", "blue", "green", "red")


def _display_limits(data: Any, lazy: bool, yx_axes: int = 2) -> list[float]:
    """Robust (0.1, 99.9) percentile display limits; one middle plane when lazy."""
    if lazy:
        index = tuple(s // 2 for s in data.shape[:-yx_axes])
        data = np.asarray(data[index])
    values = np.asarray(data).ravel()
    if values.size > 4_000_000:
        values = values[:: values.size // 4_000_000 + 1]
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.size == 0:
        return [0.0, 1.0]
    low, high = (float(v) for v in np.percentile(values, (0.1, 99.9)))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1.0
    return [low, high]


def _channel_colormap(name: str | None, index: int, count: int) -> str:
    if count == 1:
        return "gray"
    if name:
        lowered = name.lower()
        for fragments, colormap in _NAME_COLORMAPS:
            if any(fragment in lowered for fragment in fragments):
                return colormap
    palette = _MAGENTA_GREEN if count == 2 else _CMYBGR
    return palette[index % len(palette)]


def labels_layer(data: Any, info: TiffInfo, name: str) -> tuple:
    record = info.record or {}
    kwargs: dict[str, Any] = {
        "name": record.get("name") or name,
        "scale": tuple(info.scale),
        "units": tuple(info.units),
        "axis_labels": tuple(a.lower() for a in info.axes),
    }
    if record.get("translate"):
        kwargs["translate"] = tuple(record["translate"])
    if record.get("provenance") is not None:
        kwargs["metadata"] = {"napari_sam2": record["provenance"]}
    return (data, kwargs, "labels")


def image_layers(data: Any, info: TiffInfo, name: str) -> list[tuple]:
    axes = info.axes
    rgb = axes.endswith("S") and info.shape[-1] in (3, 4)
    if "S" in axes and not rgb:
        axes = axes.replace("S", "C") if "C" not in axes else axes
    keep = [i for i, a in enumerate(axes) if a not in "CS"]
    base = {
        "scale": tuple(info.scale[i] for i in keep),
        "units": tuple(info.units[i] for i in keep),
        "axis_labels": tuple(axes[i].lower() for i in keep),
        "rgb": rgb,
    }
    if "C" not in axes:
        kwargs = {**base, "name": name}
        if not rgb:
            kwargs["contrast_limits"] = _display_limits(data, info.lazy)
            kwargs["colormap"] = "gray"
        return [(data, kwargs, "image")]
    c_axis = axes.index("C")
    count = data.shape[c_axis]
    layers = []
    for i in range(count):
        channel = data[(slice(None),) * c_axis + (i,)]
        cname = info.channel_names[i] if info.channel_names else None
        kwargs = {
            **base,
            "name": cname or f"{name} [c{i}]",
            "colormap": _channel_colormap(cname, i, count),
            "blending": "translucent_no_depth" if i == 0 else "additive",
            "contrast_limits": (
                list(info.ranges[i])
                if info.ranges and len(info.ranges) == count
                else _display_limits(channel, info.lazy, 3 if rgb else 2)
            ),
        }
        layers.append((channel, kwargs, "image"))
    return layers
