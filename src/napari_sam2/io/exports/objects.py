"""Export objects: one binary mask PNG per label ID, and RGBA cut-outs.

These functions take plain arrays, so they work from scripts, the napari
console, and the widget alike::

    from napari_sam2.io.exports.objects import export_object_masks, save_cutout
    paths = export_object_masks(labels_layer.data, "masks/", plane=(12,))
    save_cutout("cell_7.png", image[12], labels[12] == 7, contrast_limits=(100, 2000))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cutout_rgba", "export_object_masks", "safe_child", "save_cutout"]

_PERCENTILES = (0.5, 99.8)


def safe_child(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name``, refusing any name that could land outside ``folder``.

    ``name`` must be a plain file name (no separator, no ``..``, not absolute); a file
    already there that is a symbolic link (which could point anywhere) is refused too.
    Raises :class:`ValueError`.
    """
    name = str(name)
    bad = (os.sep, "/", "\\", "\x00")
    if not name or name in (".", "..") or any(b in name for b in bad) or name.startswith(".."):
        raise ValueError(f"Unsafe output file name {name!r}: it must be a plain file name.")
    base = Path(os.fspath(folder))
    target = base / name
    if target.is_symlink():
        raise ValueError(f"Refusing to write through the symbolic link {str(target)!r}.")
    if target.resolve().parent != base.resolve():
        raise ValueError(f"Output {str(target)!r} would be written outside {str(base)!r}.")
    return target


def _to_uint8(values: np.ndarray, contrast_limits: Sequence[float] | None = None) -> np.ndarray:
    """Map intensities to uint8 display values.

    Parameters
    ----------
    values : numpy.ndarray
        Intensities of any real dtype.
    contrast_limits : (float, float), optional
        Values mapped to 0 and 255. Default: the (0.5, 99.8) percentiles of the
        finite values of ``values``.

    Returns
    -------
    numpy.ndarray
        uint8 array of the same shape; non-finite values become 0.
    """
    data = np.asarray(values, dtype=np.float64)
    if contrast_limits is None:
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return np.zeros(data.shape, dtype=np.uint8)
        low, high = np.percentile(finite, _PERCENTILES)
    else:
        if len(contrast_limits) != 2:
            raise ValueError(f"contrast_limits must be (low, high), got {contrast_limits!r}")
        low, high = (float(v) for v in contrast_limits)
    if not high > low:
        high = low + 1.0
    scaled = (data - low) / (high - low)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def _select_plane(labels: Any, plane: Sequence[int] | int | None) -> np.ndarray:
    array = labels
    if plane is not None:
        index = (plane,) if isinstance(plane, (int, np.integer)) else tuple(plane)
        array = array[tuple(int(i) for i in index)]
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(
            f"masks are 2D images: labels of shape {np.shape(labels)} need a `plane` "
            f"index for the {np.ndim(labels) - 2} leading axes (got plane={plane!r})"
        )
    return array


def export_object_masks(
    labels: Any,
    out_dir: str | os.PathLike,
    plane: Sequence[int] | int | None = None,
    *,
    ids: Sequence[int] | None = None,
    prefix: str = "object",
) -> list[Path]:
    """Write one binary mask PNG (0 / 255, uint8) per object ID.

    Parameters
    ----------
    labels : array-like of int
        Label image; 0 is background.
    out_dir : str or os.PathLike
        Folder for the PNGs (created if needed).
    plane : int or sequence of int, optional
        Index of the 2D plane in the leading axes, e.g. ``(12,)`` for Z=12 of a
        ZYX stack or ``(3, 12)`` for T=3, Z=12. Required unless ``labels`` is 2D.
    ids : sequence of int, optional
        Only these IDs (default: every non-zero ID present in the plane). An ID
        absent from the plane gives an all-zero mask.
    prefix : str
        File name prefix.

    Returns
    -------
    list of pathlib.Path
        The files written, in ascending ID order, named
        ``{prefix}_{id:04d}.png`` (plus ``_plane-3-12`` when ``plane`` is given).
    """
    array = _select_plane(labels, plane)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, not {array.dtype}")
    from PIL import Image

    out = Path(os.fspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    safe_child(out, f"{prefix}_0.png")  # an unsafe prefix fails before anything is written
    wanted = sorted(int(i) for i in (ids if ids is not None else np.unique(array)) if i != 0)
    suffix = ""
    if plane is not None:
        index = (plane,) if isinstance(plane, (int, np.integer)) else tuple(plane)
        suffix = "_plane-" + "-".join(str(int(i)) for i in index)
    paths = []
    for label_id in wanted:
        mask = np.where(array == label_id, 255, 0).astype(np.uint8)
        path = safe_child(out, f"{prefix}_{label_id:04d}{suffix}.png")
        Image.fromarray(mask, mode="L").save(path)
        paths.append(path)
    return paths


def cutout_rgba(
    image_plane: Any,
    mask: Any,
    contrast_limits: Sequence[float] | None = None,
) -> np.ndarray:
    """Cut an object out of an image plane as RGBA, cropped to its bounding box.

    Parameters
    ----------
    image_plane : array-like
        ``(H, W)`` grayscale or ``(H, W, 3|4)`` colour plane, any real dtype.
        uint8 colour planes are used as they are; other planes are mapped to
        uint8 with ``contrast_limits``, else robust (0.5, 99.8) percentiles of the
        whole plane (not just the object), so the cut-out looks like the view.
    mask : array-like of bool
        ``(H, W)`` object mask (e.g. ``labels_plane == label_id``).
    contrast_limits : (float, float), optional
        Display limits, e.g. the image layer's ``contrast_limits``.

    Returns
    -------
    numpy.ndarray
        ``(h, w, 4)`` uint8 RGBA, where ``h, w`` is the mask's bounding box;
        alpha is 255 inside the mask and 0 outside.

    Raises
    ------
    ValueError
        If the shapes do not match or the mask is empty.
    """
    image = np.asarray(image_plane)
    obj = np.asarray(mask).astype(bool)
    if obj.ndim != 2 or image.shape[:2] != obj.shape:
        raise ValueError(
            f"mask of shape {obj.shape} does not match image plane of shape {image.shape}"
        )
    if image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[..., :3]
        rgb = rgb if rgb.dtype == np.uint8 else _to_uint8(rgb, contrast_limits)
    elif image.ndim == 2:
        gray = _to_uint8(image, contrast_limits)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        raise ValueError(f"image plane must be (H, W) or (H, W, 3|4), got {image.shape}")
    rows = np.flatnonzero(obj.any(axis=1))
    cols = np.flatnonzero(obj.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: nothing to cut out")
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out = np.zeros(obj[box].shape + (4,), dtype=np.uint8)
    out[..., :3] = rgb[box]
    out[..., 3] = np.where(obj[box], 255, 0)
    return out


def save_cutout(
    path: str | os.PathLike,
    image_plane: Any,
    mask: Any,
    contrast_limits: Sequence[float] | None = None,
) -> Path:
    """Save :func:`cutout_rgba` of an object as an RGBA PNG.

    Parameters
    ----------
    path : str or os.PathLike
        Target file (``.png`` recommended: it keeps the alpha channel).
    image_plane, mask, contrast_limits
        See :func:`cutout_rgba`.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from PIL import Image

    rgba = cutout_rgba(image_plane, mask, contrast_limits)
    target = Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, mode="RGBA").save(target)
    return target
