"""The one registry of file formats: which names and files are TIFF, NIfTI or DICOM, how
any command reads an image, and which kind of labels file (and suffix) an output gets.

Every front end asks here instead of keeping its own suffix table: ``napari-sam2
segment``/``evaluate``/``precompute``/``finetune``, :mod:`napari_sam2.batch` and the
widget's *Save labels* button::

    from napari_sam2.io.formats import image_kind, read_image

    img = read_image("scan.nii.gz")        # TIFF, OME-TIFF, NIfTI, DICOM file or folder
    img.data.shape, img.axes, img.scale    # pixels, "ZYX", spacing in the file's units
    image_kind("cells.ome.tif")            # "tiff"

A file that none of the readers takes raises :class:`~napari_sam2.io.errors.ImageReadError`
(:class:`~napari_sam2.io.errors.UnsupportedFormatError` for an unknown kind), a
``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageReadError, UnsupportedFormatError
from .suffixes import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    TIFF_SUFFIXES,
    stem,
    suffix,
)

__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "LABELS_SUFFIXES",
    "NIFTI_SUFFIXES",
    "TIFF_SUFFIXES",
    "Image",
    "image_kind",
    "is_dicom",
    "is_dicom_dir",
    "labels_kind",
    "labels_output_suffix",
    "labels_suffix",
    "read_image",
    "read_labels",
    "stem",
    "suffix",
]

LABELS_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".nii.gz", ".nii", ".dcm")
"""The names a labels file can be written under (TIFF/OME-TIFF, NIfTI, DICOM SEG)."""
TIFF_OUT, NIFTI_OUT, SEG_OUT = "_labels.tif", "_labels.nii.gz", "_labels.dcm"
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
_DICOM_PROBE = 50  # files of a folder looked into for the DICM preamble


# ------------------------------------------------------------------------ what is it
def _has_dicom_magic(path: Path) -> bool:
    from .medical.dicom import has_dicom_magic

    try:
        return path.is_file() and has_dicom_magic(path)
    except OSError:
        return False


def is_dicom_dir(path: str | Path) -> bool:
    """A folder holding DICOM files (``.dcm`` names, a DICOMDIR, or files with the DICM
    preamble among its first 50 files, like the series folders of a DICOMDIR), or, when
    it holds no image file itself, DICOM files in its subfolders (a study export)."""
    path = Path(path)
    if not path.is_dir():
        return False
    children = sorted(path.iterdir())
    if any(p.suffix.lower() in DICOM_SUFFIXES or p.name.upper() == "DICOMDIR" for p in children):
        return True
    unnamed = [p for p in children if suffix(p) not in IMAGE_SUFFIXES]
    if any(_has_dicom_magic(p) for p in unnamed[:_DICOM_PROBE]):
        return True
    if any(p.is_file() and suffix(p) in IMAGE_SUFFIXES for p in children):
        return False
    # a study/patient export: no image here, DICOM series in subfolders (study/SE1/IM1...)
    from .medical.dicom import folder_has_dicom

    try:
        return folder_has_dicom(path)
    except OSError:
        return False


def is_dicom(path: str | Path) -> bool:
    """A DICOM input: a ``.dcm`` file, a DICOM folder, or a file with the DICM preamble."""
    path = Path(path)
    suf = suffix(path)
    return suf in DICOM_SUFFIXES or is_dicom_dir(path) or (
        suf not in IMAGE_SUFFIXES and _has_dicom_magic(path)
    )  # fmt: skip


def _has_tiff_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def image_kind(path: str | Path) -> str | None:
    """``"tiff"``, ``"nifti"`` or ``"dicom"`` (by name, DICOM and TIFF also by content);
    None when napari-sam2 reads no such file."""
    path = Path(path)
    suf = suffix(path)
    if suf in NIFTI_SUFFIXES:
        return "nifti"
    if is_dicom(path):
        return "dicom"
    if suf in TIFF_SUFFIXES or (path.is_file() and _has_tiff_magic(path)):
        return "tiff"
    return None


# ------------------------------------------------------------------------ labels out
def labels_kind(path: str | Path) -> str:
    """The labels file a name asks for: ``"nifti"`` (``.nii``, ``.nii.gz``), ``"seg"``
    (``.dcm``, DICOM SEG) or ``"tiff"`` (anything else: ``.tif``, ``.ome.tif``...)."""
    low = Path(path).name.lower()
    if low.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if low.endswith(DICOM_SUFFIXES):
        return "seg"
    return "tiff"


def labels_suffix(path: str | Path) -> str:
    """The full labels suffix of a name (``.ome.tif``, ``.nii.gz``...; ``.tif`` if none)."""
    low = Path(path).name.lower()
    return next((s for s in LABELS_SUFFIXES if low.endswith(s)), ".tif")


def labels_output_suffix(image: str | Path, dicom_seg: bool = False) -> str:
    """The default labels name ending for an input image: ``_labels.tif`` for TIFF,
    ``_labels.nii.gz`` for NIfTI and DICOM (``_labels.dcm``, a DICOM SEG, for DICOM with
    ``dicom_seg``)."""
    image = Path(image)
    if suffix(image) in NIFTI_SUFFIXES:
        return NIFTI_OUT
    if is_dicom(image):
        return SEG_OUT if dicom_seg else NIFTI_OUT
    return TIFF_OUT


# ------------------------------------------------------------------------------ read
@dataclass
class Image:
    """One input image: pixels plus what a labels output keeps of it.

    ``axes``: the file's axis letters (``"ZYX"``, ``"TZCYX"``, ``"YXS"`` for RGB; ``""``
    when unknown); ``scale``/``units``: one per axis or None; ``extra``: ``reader`` and,
    for NIfTI/DICOM, ``medical`` (the record the NIfTI/SEG writers need), ``affine``,
    ``translate``; ``notes``: reader warnings worth reporting (missing slices...);
    ``series``: a DICOM input's series listing (``name``, ``images`` of each), else [].
    """

    data: object
    axes: str
    scale: list | None = None
    units: list | None = None
    extra: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    series: list = field(default_factory=list)


def from_medical(data, info: dict, kind: str) -> Image:
    """An :class:`Image` from the (data, info) of the NIfTI reader (``info["transform"]``)
    or of one DICOM series (``scale``/``translate``/``affine`` at the top, ``rgb``)."""
    data = np.asarray(data)
    tr = dict(info.get("transform") or {k: info[k] for k in ("scale", "translate", "affine")
                                        if info.get(k) is not None})  # fmt: skip
    rgb = bool(info.get("rgb")) and data.ndim >= 3 and data.shape[-1] in (3, 4)
    space = data.ndim - 1 if rgb else data.ndim
    axes = ("TZYX"[-space:] + ("S" if rgb else "")) if space <= 4 else ""
    scale = tr.get("scale")
    scale = list(scale) + [1.0] * (data.ndim - len(scale)) if scale is not None else None
    units = info.get("units")
    units = [str(u) for u in units] + ["pixel"] * (data.ndim - len(units)) if units else None
    extra = {"reader": kind}
    for k in ("affine", "translate"):
        if tr.get(k) is not None:
            extra[k] = np.asarray(tr[k]).tolist()
    if info.get("medical") is not None:
        extra["medical"] = info["medical"]
    return Image(data, axes, scale, units if units and len(units) == data.ndim else None, extra)


def _read_dicom(path: Path, series: int) -> Image:
    from .medical.dicom import open_series

    listing, found = open_series(path, series)  # headers read once, one series decoded
    if found is None:
        raise ImageReadError(
            f"{path.name} holds {len(listing)} DICOM series: --series {series} does not exist"
        )
    data, info = found
    img = from_medical(data, info, "dicom")
    img.notes += [str(w) for w in info.get("warnings") or ()]  # missing slices, uneven spacing
    img.series = listing
    return img


def read_image(path: str | Path, series: int = 0, lazy: bool | None = None) -> Image:
    """Read any supported image: TIFF/OME-TIFF (``series``: which image of the file;
    ``lazy``: see :func:`~napari_sam2.io.open_tiff`), NIfTI (in the display orientation
    of the NIfTI reader) or one series of a DICOM file/folder/DICOMDIR.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    UnsupportedFormatError
        None of the readers takes the file (the message lists what is read).
    ImageReadError
        The file is of a known kind but cannot be read (corrupt, truncated, no such series).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    kind = image_kind(path)
    if kind == "nifti":
        from .medical.nifti import open_nifti

        return from_medical(*open_nifti(path), "nifti")
    if kind == "dicom":
        return _read_dicom(path, series)
    if kind is None:
        raise UnsupportedFormatError(
            f"{path.name} is not an image napari-sam2 reads: TIFF/OME-TIFF (.tif), NIfTI "
            "(.nii, .nii.gz) or DICOM (.dcm files, DICOM folders, DICOMDIR)"
        )
    from .tiff.reader import open_tiff

    data, info = open_tiff(path, series=series, lazy=lazy)
    return Image(data, info.axes or "", list(info.scale), list(info.units), {"reader": "tiff"})


def read_labels(path: str | Path, image: Image) -> np.ndarray:
    """Labels (ground truth, an earlier result) for ``image``, on its grid: a labels TIFF,
    a NIfTI (shown in the same display orientation as a NIfTI image), or a DICOM SEG or
    RTSTRUCT referencing the DICOM series ``image`` was read from.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ImageReadError
        Unreadable, or its shape is not the image's (the message gives both).
    """
    path = Path(path)
    if image_kind(path) == "dicom" and path.is_file():
        from .medical.dicom_labels import label_objects, labels_on_source

        if label_objects([path]):  # a DICOM SEG or RTSTRUCT: placed by its references
            labels, _ = labels_on_source(path, image.extra.get("medical") or {}, _grid(image))
            return _on_grid(labels, path, image)
    labels = np.asarray(read_image(path).data)
    return _on_grid(labels, path, image)


def _grid(image: Image) -> tuple[int, ...]:
    """The image's shape without its colour/channel axes (all of it when axes are unknown)."""
    shape = tuple(np.shape(image.data))
    if len(image.axes) != len(shape):
        return shape
    return tuple(n for n, a in zip(shape, image.axes, strict=True) if a not in "CS")


def _on_grid(labels: np.ndarray, path: Path, image: Image) -> np.ndarray:
    if len(image.axes) != np.ndim(image.data):
        return labels  # axes unknown: the caller checks the shape
    shape = _grid(image)
    if labels.shape != shape and labels.squeeze().shape == tuple(s for s in shape if s != 1):
        labels = labels.reshape(shape)  # a one-slice volume vs a 2-D image
    if labels.shape != shape:
        raise ImageReadError(
            f"{path.name} has shape {labels.shape} but the image has {shape}: give the "
            "labels drawn on this image"
        )
    return labels
