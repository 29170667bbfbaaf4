"""Outputs: the atomic write (temporary name in the output folder, then ``os.replace``) in
the format the name asks for (:func:`napari_sam2.io.formats.labels_kind`: TIFF, NIfTI or
DICOM SEG), and the check that an existing output is complete."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import warnings
from pathlib import Path

import numpy as np

from ..io.formats import labels_kind, labels_suffix
from . import _files as F

SEG_DESCRIPTION = "napari-sam2 segment"


def temp_path(path: Path, tag: str = "") -> Path:
    """A hidden temporary name in the output's own folder (same file system → atomic
    rename) that keeps the output's full suffix (``.nii.gz``: nibabel compresses by name)."""
    path = Path(path)
    token = f"{os.getpid()}-{secrets.token_hex(3)}{tag}"
    return path.with_name(f".{path.name}{F.PARTIAL}{token}{labels_suffix(path)}")


def remove_stale_partials(path: Path) -> None:
    """Delete temporary files left by an earlier, killed run for this output."""
    path = Path(path)
    if path.parent.is_dir():
        for p in path.parent.glob(f".{glob.escape(path.name)}{F.PARTIAL}*"):
            with contextlib.suppress(OSError):
                p.unlink()


# ------------------------------------------------------------------------ complete?
def read_output_record(path: Path) -> dict | None:
    """The provenance of an existing output, or None when it is not a complete output
    of ours (unreadable, truncated, no provenance, not made by ``napari-sam2 segment``)."""
    try:
        kind = labels_kind(path)
        if kind == "nifti":
            prov = _nifti_record(Path(path))
        elif kind == "seg":
            prov = _seg_record(Path(path))
        else:
            prov = _tiff_record(Path(path))
    except Exception:  # noqa: BLE001 - any unreadable file is "not complete"
        return None
    return prov if prov and prov.get("command") == F.COMMAND else None


def is_foreign(path: Path) -> bool:
    """Whether ``path`` is a whole, readable image that ``napari-sam2 segment`` did not
    write (e.g. hand-made ground truth named ``<stem>_labels.tif``): it must not be
    replaced without ``--overwrite``.  A truncated or unreadable file is not foreign."""
    path = Path(path)
    if not path.is_file() or read_output_record(path) is not None:
        return False
    try:
        kind = labels_kind(path)
        if kind == "nifti":
            import nibabel as nib

            np.asanyarray(nib.load(str(path)).dataobj)
        elif kind == "seg":
            import pydicom

            pydicom.dcmread(path).pixel_array  # noqa: B018 - a truncated file fails here
        else:
            import tifffile

            tifffile.imread(path)
    except Exception:  # noqa: BLE001 - unreadable: a broken output, redo it
        return False
    return True


def _tiff_record(path: Path) -> dict:
    from ..io.tiff.reader import open_tiff

    _, info = open_tiff(path, lazy=True)
    return (info.record or {}).get("provenance") or {}


def _nifti_record(path: Path) -> dict:
    import nibabel as nib

    from ..io.medical.nifti import provenance_of

    img = nib.load(str(path))
    np.asanyarray(img.dataobj)  # a truncated .nii.gz fails here
    return provenance_of(img) or {}


def _seg_record(path: Path) -> dict:
    import pydicom

    ds = pydicom.dcmread(path)
    if ds.get("Modality") != "SEG" or ds.get("Manufacturer") != "napari-sam2":
        return {}
    ds.pixel_array  # noqa: B018 - a truncated file fails here
    desc = str(ds.get("SeriesDescription", ""))
    if not desc.startswith(SEG_DESCRIPTION):
        return {}
    return {"command": F.COMMAND, "batch": {"fingerprint": desc[len(SEG_DESCRIPTION) :].strip()}}


def load_output(path: Path) -> tuple[np.ndarray, dict] | None:
    """(labels in the input's display orientation, provenance) of an output; None for a
    DICOM SEG (open it with a DICOM viewer, or the source series and napari-sam2)."""
    kind = labels_kind(path)
    if kind == "seg":
        return None
    if kind == "nifti":
        from ..io.medical.writer import load_labels_nifti

        return load_labels_nifti(path)
    from ..io import load_labels

    labels, info = load_labels(path)
    return labels, info.get("provenance") or {}


# ---------------------------------------------------------------------------- write
def atomic_save(path: Path, labels, provenance: dict, img: F.Image, keep: list) -> list[str]:
    """Write the labels in the output's format under a temporary name, then rename it
    onto ``path``.  ``keep``: the image axes the labels have.  Returns notes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    notes: list[str] = []
    try:
        kind = labels_kind(path)
        if kind == "nifti":
            notes += _write_nifti(tmp, labels, provenance, img)
        elif kind == "seg":
            _write_seg(tmp, labels, provenance, img)
        else:
            _write_tiff(tmp, labels, provenance, img, keep)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return notes


def _write_tiff(tmp: Path, labels, provenance: dict, img: F.Image, keep: list) -> None:
    from ..io.tiff.writer import write_labels_tiff

    axes = "".join(img.axes[i] for i in keep) if img.axes else None
    write_labels_tiff(
        tmp,
        labels,
        provenance,
        axes=axes,
        scale=[img.scale[i] for i in keep] if img.scale else None,
        units=[img.units[i] for i in keep] if img.units else None,
    )


def _write_nifti(tmp: Path, labels, provenance: dict, img: F.Image) -> list[str]:
    """Source voxel order and source affine (lines up in ITK-SNAP / 3D Slicer); a DICOM
    without patient geometry: display order, an affine from the pixel size."""
    from ..io.medical.writer import save_labels_nifti
    from ..io.provenance import make_provenance

    provenance = make_provenance(**provenance)
    medical = img.extra.get("medical") or {}
    if medical.get("source_affine") is not None:
        save_labels_nifti(tmp, labels, medical=medical, provenance=provenance)
        return []
    data = labels[None] if labels.ndim == 2 else labels
    scale = [float(s) for s in (img.scale or [])][-2:] or [1.0, 1.0]
    lead = float(img.scale[-3]) if img.scale and len(img.scale) >= 3 and data.ndim == 3 else 1.0
    world = np.diag([lead, *scale, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "source unknown": said in the note
        save_labels_nifti(tmp, data, world_affine=world, provenance=provenance)
    return ["no patient geometry in the source: NIfTI on the pixel grid (pixel size only)"]


def _write_seg(tmp: Path, labels, provenance: dict, img: F.Image) -> None:
    import pydicom

    from ..io.medical.dicom_seg import save_labels_dicom_seg

    save_labels_dicom_seg(tmp, labels, medical=img.extra.get("medical") or {},
                          provenance=provenance,
                          segments=(provenance.get("batch") or {}).get("segments"))  # fmt: skip
    ds = pydicom.dcmread(tmp)
    fp = (provenance.get("batch") or {}).get("fingerprint", "")
    ds.SeriesDescription = f"{SEG_DESCRIPTION} {fp}"[:64]
    ds.save_as(tmp)
