"""Private: build napari LayerData tuples from an array and its TiffInfo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._series import TiffInfo

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


def _levels_of(data: Any, multiscale: bool) -> list:
    return list(data) if multiscale else [data]


def image_layers(
    data: Any, info: TiffInfo, name: str, *, suffix: str = "", multiscale: bool = False
) -> list[tuple]:
    """One image LayerData tuple per channel (one for gray or RGB data).

    With ``multiscale=True``, ``data`` is the list of pyramid levels (full resolution
    first) and every layer gets the list of its channel's levels, ``multiscale=True``,
    level 0's scale, and contrast limits from the smallest level. ``suffix`` is appended
    to every layer name (the series, for files with several).
    """
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
    if multiscale:
        base["multiscale"] = True
    levels = _levels_of(data, multiscale)
    # display limits: from the smallest level of a pyramid, from the middle plane
    # (of leading axes such as Z or T) of lazy data
    sample_lazy = info.lazy or multiscale
    if "C" not in axes:
        kwargs = {**base, "name": name + suffix}
        if not rgb:
            kwargs["contrast_limits"] = _display_limits(levels[-1], sample_lazy)
            kwargs["colormap"] = "gray"
        return [(data, kwargs, "image")]
    c_axis = axes.index("C")
    count = info.shape[c_axis]
    pick = (slice(None),) * c_axis
    layers = []
    for i in range(count):
        channel = [level[(*pick, i)] for level in levels]
        cname = info.channel_names[i] if info.channel_names else None
        kwargs = {
            **base,
            "name": (cname or f"{name} [c{i}]") + suffix,
            "colormap": _channel_colormap(cname, i, count),
            "blending": "translucent_no_depth" if i == 0 else "additive",
            "contrast_limits": (
                list(info.ranges[i])
                if info.ranges and len(info.ranges) == count
                else _display_limits(channel[-1], sample_lazy, 3 if rgb else 2)
            ),
        }
        layers.append((channel if multiscale else channel[0], kwargs, "image"))
    return layers
