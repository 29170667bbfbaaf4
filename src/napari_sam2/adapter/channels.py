"""What pixels of an Image layer feed SAM 2: resolution level and channels.

Channels reach napari in two ways, and both are handled:

- **a channel axis** inside one layer (an axis labelled ``c``/``channel``, shown with a
  slider): the default is the channel being *viewed*; the mean, the max or an RGB composite
  of the channels, or one fixed channel can be chosen;
- **one layer per channel** (napari's ``channel_axis`` split, what our reader and most
  readers produce): the default is the chosen layer alone; the mean, max or RGB composite
  of the *visible* channel layers of the same shape and geometry can be chosen.  They are
  stacked lazily (dask), each with its own contrast limits.

A channel axis is never fed to SAM as Z.  Multiscale layers are segmented at full
resolution (level 0) unless another resolution level is chosen (``level``; see
:mod:`.tiles` for how a prompt on a large plane or a pyramid reads only one tile).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.errors import ImageError
from .coords import full_resolution
from .layers import channel_axis_of

VIEWED = "viewed"
COMBINED = ("mean", "max", "composite")
CHOICES = (VIEWED, *COMBINED)


def _same_geometry(a, b) -> bool:
    return (
        a.ndim == b.ndim
        and tuple(full_resolution(a).shape) == tuple(full_resolution(b).shape)
        and np.allclose(a.affine.affine_matrix, b.affine.affine_matrix)
        and np.allclose(a.data_to_world([0] * a.ndim), b.data_to_world([0] * b.ndim))
        and np.allclose(a.scale, b.scale)
    )


def channel_layers(viewer, image_layer, *, visible_only: bool = True) -> list:
    """Image layers that look like channels of ``image_layer`` (itself included), in the
    order of the layer list.

    Same shape, same transform, not RGB, no channel axis of their own; hidden layers are
    left out when ``visible_only`` (the chosen layer itself always counts).
    """
    import napari

    if getattr(image_layer, "rgb", False) or channel_axis_of(image_layer) is not None:
        return [image_layer]
    out = []
    for lay in viewer.layers:  # layer-list order: the same stack whichever layer is chosen
        if lay is image_layer:
            out.append(lay)
            continue
        if not isinstance(lay, napari.layers.Image) or lay.rgb:
            continue
        if channel_axis_of(lay) is not None or (visible_only and not lay.visible):
            continue
        if _same_geometry(lay, image_layer):
            out.append(lay)
    return out if any(lay is image_layer for lay in out) else [image_layer, *out]


def channel_options(viewer, image_layer) -> list[tuple[str, object]]:
    """(text, choice) pairs for the widget's channel picker; empty when there is no choice."""
    if image_layer is None or getattr(image_layer, "rgb", False):
        return []
    ch = channel_axis_of(image_layer)
    if ch is not None:
        n = int(full_resolution(image_layer).shape[ch])
        return [
            ("Viewed channel", VIEWED),
            ("Mean of channels", "mean"),
            ("Max of channels", "max"),
            ("RGB composite (first 3)", "composite"),
            *((f"Channel {i}", i) for i in range(n)),
        ]
    if len(channel_layers(viewer, image_layer, visible_only=False)) > 1:
        return [
            ("This layer", VIEWED),
            ("Mean of visible channels", "mean"),
            ("Max of visible channels", "max"),
            ("RGB composite of visible channels", "composite"),
        ]
    return []


_STACK_LABELS = ("z", "t", "time", "depth", "plane", "planes", "slice", "slices", "frame")


def channels_as_planes_hint(image_layer) -> str | None:
    """A hint when an unlabelled image looks like channels stacked as planes.

    ``np.stack([dapi, gfp])``, a CYX TIFF opened without ``channel_axis`` (2, H, W), or an
    ImageJ ZCYX hyperstack opened by napari's builtin reader (Z, 2, H, W) reach napari
    with the channels as one more plane axis, segmented plane by plane.  Said when the axis
    right before the plane (rows, columns) has 2 to 4 entries, far fewer than the plane's
    rows and columns, the layer is 3-D or 4-D, not RGB, has no channel axis, no axis label
    saying Z/T there and no own spacing along it.  Segmentation is not changed: this is
    only a hint.
    """
    if image_layer is None or getattr(image_layer, "rgb", False):
        return None
    if image_layer.ndim not in (3, 4) or channel_axis_of(image_layer) is not None:
        return None
    k = image_layer.ndim - 3  # the axis right before (rows, columns)
    shape = tuple(int(v) for v in full_resolution(image_layer).shape)
    n, h, w = shape[k], shape[-2], shape[-1]
    labels = tuple(getattr(image_layer, "axis_labels", ("",) * image_layer.ndim))
    label = str(labels[k]).strip().lower()
    spacing = float(image_layer.scale[k])
    if not 2 <= n <= 4 or min(h, w) < 16 * n or label in _STACK_LABELS or spacing != 1.0:
        return None
    if k == 0:
        where, how = f"{n} planes of {h}×{w}: they are segmented as Z planes", "('c', 'y', 'x')"
    else:
        where = f"an axis {k} of {n} planes ({'×'.join(map(str, shape))}): it is segmented as a Z/T axis"
        how = "('z', 'c', 'y', 'x')"
    return (
        f"'{image_layer.name}' has {where}. "
        "If they are channels, open them as channels: right-click the layer > Split Stack, "
        f"or viewer.add_image(data, channel_axis={k}), or axis_labels={how}; then "
        "choose in the Channels picker."
    )


@dataclass
class ImageSource:
    """The array and ``Segmenter.set_image`` keywords for one request."""

    data: object
    kwargs: dict
    layers: tuple
    level: int = 0
    orientation: tuple = ()  # the displayed axes' key when not the last two (.orientation)
    _signature: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # taken now, with ``data``: read later (in the worker), a layer whose data was
        # replaced meanwhile would give the new array's id to the old pixels
        self._signature = (
            tuple((id(lay), id(lay.data)) for lay in self.layers),
            repr(self.kwargs),
            self.level,
        ) + ((self.orientation,) if self.orientation else ())

    def signature(self) -> tuple:
        """Changes when the pixels or the way they are mapped change (as of creation;
        the segmenter keeps ``data`` alive, so an id is not reused meanwhile)."""
        return self._signature

    def describe(self) -> dict:
        d = {"layers": [lay.name for lay in self.layers]}
        if self.level:
            d["level"] = self.level
        if "channel" in self.kwargs:
            d["channel"] = self.kwargs["channel"]
        if self.orientation:
            d["plane_axes"] = list(self.orientation[-2:])
        return d


def _lazy(arr):
    """A dask view of ``arr``, chunked by plane, without hashing its content (``name=False``:
    dask would otherwise hash a whole in-memory array, ~3 ms per MB, on the GUI thread)."""
    import dask.array as da

    if isinstance(arr, da.Array):
        return arr
    chunks = (1,) * (arr.ndim - 2) + tuple(arr.shape[-2:])
    return da.from_array(arr, chunks=chunks, name=False)


def _limits(layer):
    lo, hi = (float(v) for v in layer.contrast_limits)
    return (lo, hi) if hi > lo else None


def _at_level(layer, level: int):
    """The layer's data at resolution ``level`` (0: full resolution)."""
    if not getattr(layer, "multiscale", False):
        if level:
            raise ImageError(f"Image '{layer.name}' has one resolution level only.")
        return layer.data
    if not 0 <= level < len(layer.data):
        raise ImageError(f"Image '{layer.name}' has no resolution level {level}.")
    return layer.data[level]


def image_source(
    viewer, image_layer, choice=VIEWED, viewed_index=None, level: int = 0
) -> ImageSource:
    """What to segment for ``image_layer`` and the channel ``choice``.

    ``viewed_index``: the layer's full data index of the viewed plane (including its
    channel axis), used by ``choice="viewed"`` on a layer with a channel axis.
    ``level``: the resolution level of a multiscale layer (0: full resolution).
    """
    level = int(level or 0)
    data = _at_level(image_layer, level)
    rgb = bool(getattr(image_layer, "rgb", False))
    kw: dict = {"rgb": rgb, "channel_axis": None}
    limits = None if rgb else _limits(image_layer)
    ch = channel_axis_of(image_layer)
    if ch is not None:
        n = int(data.shape[ch])
        if choice == VIEWED:
            if viewed_index is None:
                raise ImageError("The viewed channel is unknown: no viewer position given.")
            choice = int(viewed_index[ch])
        if not isinstance(choice, str) and not 0 <= int(choice) < n:
            raise ImageError(f"Channel {choice} does not exist: the image has {n} channels.")
        if isinstance(choice, str) and choice not in COMBINED:
            raise ImageError(f"Unknown channel choice {choice!r}: use {CHOICES} or an index.")
        kw.update(channel_axis=ch, channel=choice)
        if limits:
            kw["contrast_limits"] = limits
        return ImageSource(data, kw, (image_layer,), level)
    if choice in COMBINED and not rgb:
        layers = channel_layers(viewer, image_layer)
        if len(layers) > 1:
            import dask.array as da

            stack = da.stack([_lazy(_at_level(lay, level)) for lay in layers], axis=0)
            per = [_limits(lay) for lay in layers]
            kw.update(channel_axis=0, channel=choice)
            if all(per):
                kw["contrast_limits"] = per
            return ImageSource(stack, kw, tuple(layers), level)
    elif choice not in CHOICES and not rgb:
        raise ImageError(
            f"Image '{image_layer.name}' has no channel axis: channel {choice!r} cannot be picked."
        )
    if limits:
        kw["contrast_limits"] = limits
    return ImageSource(data, kw, (image_layer,), level)
