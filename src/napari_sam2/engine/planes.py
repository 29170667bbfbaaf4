"""Lazy access to the 2-D planes of an n-D image, and stack-wide normalisation.

SAM 2 takes ``float32`` ``(H, W, 3)`` images in ``[0, 1]``.  Microscopy images are 12/16-bit,
float, multichannel, Z/T stacks, often lazy (dask, zarr).  :class:`PlaneSource` reads only the
plane it is asked for, and maps intensities with *one* set of limits for the whole stack:

1. contrast limits supplied by the caller (what the user sees on screen), else
2. robust percentiles of the whole stack, computed once from a bounded sample.

Never per plane, so an intensity means the same on every Z/T plane.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ImageError

CHANNEL_MODES = ("mean", "max", "composite")
DEFAULT_PERCENTILES = (0.5, 99.8)
_SAMPLE_VALUES = 4_000_000  # values read to estimate stack-wide percentiles
_SAMPLE_PLANES = 16


@dataclass(frozen=True)
class Normalization:
    """Linear intensity mapping ``(x - low) / (high - low)`` clipped to [0, 1], per channel."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    source: str  # "contrast_limits", "percentiles", "rgb8", "unit"

    def key(self) -> tuple:
        """Exact limits (float64 as written by ``float.hex``): no rounding, so a window
        change on small-valued float data (0..1e-7 vs 0..4e-7) is a new key."""
        return (
            self.source,
            tuple(float(v).hex() for v in self.low),
            tuple(float(v).hex() for v in self.high),
        )

    def to_dict(self) -> dict:
        return {"source": self.source, "low": list(self.low), "high": list(self.high)}

    def apply(self, values: np.ndarray, channel: int = 0) -> np.ndarray:
        """Map one channel's values to float32 in [0, 1]; NaN→0, +inf→1, -inf→0."""
        lo, hi = self.low[channel], self.high[channel]
        x = np.asarray(values, dtype=np.float32)
        span = hi - lo if hi > lo else 1.0
        out = (x - np.float32(lo)) / np.float32(span)
        out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(out, 0.0, 1.0, out=out)


def guess_rgb(shape: Sequence[int], dtype=None) -> bool:
    """napari's rule: a last axis of length 3 or 4 on an image of 3+ dims is RGB(A)."""
    return len(shape) >= 3 and shape[-1] in (3, 4)


class PlaneSource:
    """One image (numpy, dask or zarr; 2-D to n-D) seen as a set of 2-D planes.

    Parameters
    ----------
    data : array-like
        The image, as a napari image layer holds it.
    rgb : bool, optional
        Whether the last axis is RGB(A).  Guessed like napari when None.
    channel_axis : int, optional
        Axis holding channels (never fed to SAM as Z).  ``None`` for single-channel data.
    channel : int or {"mean", "max", "composite"}
        How channels become SAM's input: one channel, their mean or max (each channel
        normalised first), or the first three channels as R, G, B.
    contrast_limits : (low, high) or sequence of them, optional
        Intensity window.  One pair for all channels or one per channel.
    percentiles : (low, high)
        Robust stack-wide percentiles used when no contrast limits are given.
    """

    def __init__(
        self,
        data,
        *,
        rgb: bool | None = None,
        channel_axis: int | None = None,
        channel: int | str = "mean",
        contrast_limits=None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    ):
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            try:
                data = np.asarray(data)
            except (TypeError, ValueError) as e:  # ragged nested lists
                raise ImageError(f"The image is not a regular array of numbers ({e}).") from None
        if data.dtype.kind not in "biuf":
            raise ImageError(f"Unsupported image dtype {data.dtype}: expected numbers.")
        self.data = data
        ndim = data.ndim
        self.rgb = guess_rgb(data.shape) if rgb is None else bool(rgb)
        if self.rgb and (ndim < 3 or data.shape[-1] not in (3, 4)):
            raise ImageError(
                f"rgb=True needs a last axis of length 3 or 4, got shape {data.shape}."
            )
        spatial = (ndim - 3, ndim - 2) if self.rgb else (ndim - 2, ndim - 1)
        if min(spatial) < 0:
            raise ImageError(
                f"An image needs at least 2 spatial dimensions, got shape {tuple(data.shape)}."
            )
        if channel_axis is not None:
            if not -ndim <= channel_axis < ndim:
                raise ImageError(f"channel_axis {channel_axis} is out of range for {ndim}-D data.")
            channel_axis %= ndim
            if channel_axis in spatial or (self.rgb and channel_axis == ndim - 1):
                raise ImageError(
                    f"channel_axis {channel_axis} is a spatial/RGB axis of the image."
                )
            if self.rgb:
                raise ImageError("An RGB image cannot also have a channel axis.")
        self.channel_axis = channel_axis
        n_ch = data.shape[channel_axis] if channel_axis is not None else 1
        if isinstance(channel, str):
            if channel not in CHANNEL_MODES:
                raise ImageError(
                    f"channel must be an int or one of {CHANNEL_MODES}, not {channel!r}."
                )
        elif not 0 <= int(channel) < n_ch:
            raise ImageError(f"channel {channel} does not exist: the image has {n_ch} channel(s).")
        self.channel = channel
        self.n_channels = n_ch
        self.spatial_axes = spatial
        self.leading_axes = tuple(
            a
            for a in range(ndim)
            if a not in spatial and a != channel_axis and not (self.rgb and a == ndim - 1)
        )
        self.index_shape = tuple(int(data.shape[a]) for a in self.leading_axes)
        self.plane_shape = (int(data.shape[spatial[0]]), int(data.shape[spatial[1]]))
        if 0 in tuple(int(n) for n in data.shape):
            raise ImageError(
                f"The image is empty: an axis of its shape {data.shape} has length 0."
            )
        self.percentiles = tuple(float(p) for p in percentiles)
        self._contrast_limits = contrast_limits
        self._normalization: Normalization | None = None

    # ------------------------------------------------------------------ planes
    def check_index(self, index) -> tuple[int, ...]:
        """Normalise a plane index to a tuple of ints over :attr:`leading_axes`."""
        if index is None:
            index = ()
        elif np.isscalar(index):
            index = (index,)
        index_in = index
        try:
            index = tuple(int(i) for i in index)
            integral = all(float(i) == j for i, j in zip(tuple(index_in), index, strict=True))
        except (TypeError, ValueError):  # NaN, text, nested sequences
            integral = False
        if not integral:
            raise ImageError(f"A plane index must be whole numbers, got {index_in!r}.")
        if len(index) != len(self.index_shape):
            raise ImageError(self._index_mismatch(index))
        for i, n in zip(index, self.index_shape, strict=True):
            if not 0 <= i < n:
                raise ImageError(f"Plane index {index} is outside the stack {self.index_shape}.")
        return index

    def _index_mismatch(self, index: tuple[int, ...]) -> str:
        n = len(self.index_shape)
        if n == 0:
            return (
                f"Plane index {index} does not match the image: it is a single 2-D plane, "
                "so give no plane index."
            )
        example = tuple(k // 2 for k in self.index_shape)
        text = (
            f"Plane index {index} does not match the image: it has {n} "
            f"{'axis' if n == 1 else 'axes'} besides the (row, col) plane, of length "
            f"{self.index_shape}, so give {n} {'index' if n == 1 else 'indices'}, "
            f"e.g. {example}."
        )
        small = [a for a in self.leading_axes if self.data.shape[a] <= 4]
        if not index and self.channel_axis is None and small:  # a CYX image, no plane
            text += (
                f" If axis {small[0]} (length {self.data.shape[small[0]]}) holds channels, "
                f"pass channel_axis={small[0]} with the image."
            )
        return text

    def _selector(self, index: tuple[int, ...], spatial=(slice(None), slice(None))) -> tuple:
        sel: list = [slice(None)] * self.data.ndim
        for ax, i in zip(self.leading_axes, index, strict=True):
            sel[ax] = i
        sel[self.spatial_axes[0]], sel[self.spatial_axes[1]] = spatial
        return tuple(sel)

    def raw_plane(self, index=()) -> np.ndarray:
        """The plane as stored: (H, W), (H, W, 3|4) for RGB, or (C, H, W) with channels."""
        index = self.check_index(index)
        plane = np.asarray(self.data[self._selector(index)])
        if self.channel_axis is not None:
            # remaining axes keep their order; move channels first
            rest = [a for a in range(self.data.ndim) if a not in self.leading_axes]
            plane = np.moveaxis(plane, rest.index(self.channel_axis), 0)
        if plane.dtype == bool:
            plane = plane.astype(np.uint8)
        return plane

    # ----------------------------------------------------------- normalisation
    @property
    def normalization(self) -> Normalization:
        """Stack-wide intensity mapping, computed once."""
        if self._normalization is None:
            self._normalization = self._compute_normalization()
        return self._normalization

    def _n_norm_channels(self) -> int:
        if self.rgb:
            return 3
        return self.n_channels

    def _compute_normalization(self) -> Normalization:
        n = self._n_norm_channels()
        cl = self._contrast_limits
        if cl is not None:
            arr = np.asarray(cl, dtype=float)
            if arr.shape == (2,):
                arr = np.tile(arr, (n, 1))
            if arr.shape != (n, 2) or not np.all(np.isfinite(arr)):
                raise ImageError(
                    f"contrast_limits must be (low, high) or one pair per channel ({n}), got {cl!r}."
                )
            return Normalization(tuple(arr[:, 0]), tuple(arr[:, 1]), "contrast_limits")
        if self.rgb and self.data.dtype == np.uint8:
            return Normalization((0.0,) * 3, (255.0,) * 3, "rgb8")
        lows, highs = [], []
        for c in range(n):
            sample = self._sample(c)
            finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
            if finite.size == 0:
                lo, hi = 0.0, 1.0
            else:
                lo, hi = (float(v) for v in np.percentile(finite, self.percentiles))
                if hi <= lo:  # very peaked histogram: fall back to the full range
                    lo, hi = float(finite.min()), float(finite.max())
            lows.append(lo)
            highs.append(hi)
        if self.rgb:  # RGB: one window for all three colours keeps hues
            lows, highs = [min(lows)] * 3, [max(highs)] * 3
        return Normalization(tuple(lows), tuple(highs), "percentiles")

    def _sample(self, c: int) -> np.ndarray:
        """A bounded, evenly strided sample of channel ``c`` over the whole stack."""
        n_planes_total = int(np.prod(self.index_shape)) if self.index_shape else 1
        k = min(n_planes_total, _SAMPLE_PLANES)
        flat = np.unique(np.linspace(0, n_planes_total - 1, k).round().astype(int))
        h, w = self.plane_shape
        per_plane = _SAMPLE_VALUES / len(flat)
        step = max(1, int(np.ceil(np.sqrt(h * w / per_plane))))
        out = []
        for f in flat:
            index = np.unravel_index(f, self.index_shape) if self.index_shape else ()
            sel = list(
                self._selector(tuple(int(i) for i in index), (slice(None, None, step),) * 2)
            )
            if self.channel_axis is not None:
                sel[self.channel_axis] = c
            if self.rgb:
                sel[-1] = c
            out.append(np.asarray(self.data[tuple(sel)], dtype=np.float64).ravel())
        return np.concatenate(out)

    # ---------------------------------------------------------------- SAM input
    def sam_image(self, index=()) -> np.ndarray:
        """The plane as SAM 2 takes it: float32 (H, W, 3) in [0, 1]."""
        return self.to_sam_image(self.raw_plane(index))

    def to_sam_image(self, plane: np.ndarray) -> np.ndarray:
        norm = self.normalization
        if self.rgb:
            chans = [norm.apply(plane[..., i], i) for i in range(3)]
        elif self.channel_axis is None:
            g = norm.apply(plane, 0)
            chans = [g, g, g]
        else:
            if isinstance(self.channel, str):
                normed = [norm.apply(plane[i], i) for i in range(plane.shape[0])]
                if self.channel == "mean":
                    g = np.mean(normed, axis=0).astype(np.float32)
                    chans = [g, g, g]
                elif self.channel == "max":
                    g = np.max(normed, axis=0)
                    chans = [g, g, g]
                else:  # composite: first three channels as R, G, B
                    zero = np.zeros_like(normed[0])
                    chans = (normed + [zero, zero])[:3]
            else:
                g = norm.apply(plane[int(self.channel)], int(self.channel))
                chans = [g, g, g]
        return np.ascontiguousarray(np.stack(chans, axis=-1), dtype=np.float32)

    def gray_image(self, index=()) -> np.ndarray:
        """Normalised single-channel view of the plane, float32 (H, W) in [0, 1]."""
        return self.sam_image(index).mean(axis=-1)

    def plane_key(self, index=(), *, raw: np.ndarray | None = None) -> str:
        """Content signature of a plane and of how it is turned into SAM's input.

        Identical pixels + identical normalisation → identical key, whatever the array
        object; a changed pixel → a new key.  Hashing is ~1 ms per megapixel, negligible
        next to an encode.  ``raw``: the plane already read with :meth:`raw_plane`
        (saves a second read of lazy data).
        """
        plane = np.ascontiguousarray(self.raw_plane(index) if raw is None else raw)
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((plane.shape, plane.dtype.str, self.rgb, self.channel)).encode())
        h.update(repr(self.normalization.key()).encode())
        h.update(memoryview(plane).cast("B"))
        return h.hexdigest()

    def iter_indices(self):
        """All plane indices of the stack, in C order."""
        return itertools.product(*(range(n) for n in self.index_shape))
