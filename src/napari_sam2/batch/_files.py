"""Inputs, outputs and reading: glob expansion, output paths that stay inside the output
folder, one reader entry point for every format, complete-output checks, atomic writes."""

from __future__ import annotations

import glob
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._results import OTHER_SERIES

TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm",)
IMAGE_SUFFIXES = TIFF_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES
LABELS_SUFFIX = "_labels"
PARTIAL = ".partial-"
COMMAND = "napari-sam2 segment"


class InputError(ValueError):
    """An input cannot be used (the message names it)."""


def _suffix(path: Path) -> str:
    low = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if low.endswith(s)), path.suffix.lower())


def stem(path: Path) -> str:
    """File name without its image suffix (``a.ome.tif`` → ``a``, ``b.nii.gz`` → ``b``)."""
    suf = _suffix(path)
    return path.name[: -len(suf)] if suf and path.name.lower().endswith(suf) else path.name


def is_labels_name(path: Path) -> bool:
    """True for ``*_labels.tif`` and the like: outputs and ground truth, not inputs."""
    return stem(path).lower().endswith(LABELS_SUFFIX)


def _dicom_magic(path: Path) -> bool:
    probe = _optional("napari_sam2.io._dicom_frames", "has_dicom_magic")
    try:
        return bool(probe and path.is_file() and probe(path))
    except OSError:
        return False


def _is_dicom_dir(path: Path) -> bool:
    """A folder holding DICOM files (``.dcm`` names, a DICOMDIR, or files with the DICM
    preamble among its first 50 files, like the series folders of a DICOMDIR), or, when
    it holds no image file itself, DICOM files in its subfolders (a study export)."""
    if not path.is_dir():
        return False
    children = sorted(path.iterdir())
    if any(p.suffix.lower() in DICOM_SUFFIXES or p.name.upper() == "DICOMDIR" for p in children):
        return True
    unnamed = [p for p in children if _suffix(p) not in IMAGE_SUFFIXES]
    if any(_dicom_magic(p) for p in unnamed[:50]):
        return True
    if any(p.is_file() and _suffix(p) in IMAGE_SUFFIXES for p in children):
        return False
    # a study/patient export: no image here, DICOM series in subfolders (study/SE1/IM1...)
    probe = _optional("napari_sam2.io._dicom_frames", "folder_has_dicom")
    try:
        return bool(probe and probe(path))
    except OSError:
        return False


def is_dicom(path: Path) -> bool:
    """A DICOM input: a ``.dcm`` file, a DICOM folder, or a file with the DICM preamble."""
    path = Path(path)
    return _suffix(path) in DICOM_SUFFIXES or _is_dicom_dir(path) or (
        _suffix(path) not in IMAGE_SUFFIXES and _dicom_magic(path)
    )  # fmt: skip


def expand_inputs(items) -> tuple[list[Path], list[str]]:
    """Files from paths, folders and globs (expanded here too, for shells that do not).

    A folder gives its image files (not recursive), or itself when it holds a DICOM
    series.  Returns (paths in order, duplicates removed; patterns that matched nothing).
    """
    out, seen, unmatched = [], set(), []
    for item in items:
        item = os.fspath(item)
        p = Path(item)
        if p.exists():
            found = [p]
        elif glob.has_magic(item):
            found = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
        else:
            found = [p]  # a missing file is reported as failed, with the others
        if not found:
            unmatched.append(item)
        for f in found:
            if f.is_dir() and not _is_dicom_dir(f):
                found_in = sorted(
                    c for c in f.iterdir() if c.is_file() and _suffix(c) in IMAGE_SUFFIXES
                )
                if not found_in:
                    unmatched.append(item)
                items_here = found_in
            else:
                items_here = [f]
            for g in items_here:
                if g.name.startswith(".") and PARTIAL in g.name:
                    continue  # our own temporary files
                key = os.path.normcase(str(g.resolve()))
                if key not in seen:
                    seen.add(key)
                    out.append(g)
    return out, unmatched


ALL_SERIES = "all"


def series_entries(inputs: list[Path], series) -> list[tuple[Path, int, bool]]:
    """``(input, series, one of --series all)`` per job: one per input, or with
    ``series="all"`` one per series of each DICOM input (others: series 0)."""
    if series != ALL_SERIES:
        return [(p, int(series), False) for p in inputs]
    out = []
    for p in inputs:
        n = 1
        if is_dicom(p):
            try:
                from ..io.dicom import list_series

                n = max(1, len(list_series(p)))
            except (ImportError, OSError, ValueError):  # read again (and reported) as a job
                n = 1
        out += [(p, k, n > 1) for k in range(n)]
    return out


def plan_outputs(
    inputs: list[Path], out_dir=None, output=None, dicom_seg: bool = False, series=0
) -> list[tuple[Path, str | None]]:
    """The output path of each input, or the reason why there is none.

    ``output``: the one labels file for a single input.  ``out_dir``: outputs go under it,
    mirroring the inputs' folders below their common parent.  Neither: next to each
    input.  Outputs are ``<stem>_labels.tif`` (``.nii.gz`` for NIfTI and DICOM inputs,
    ``.dcm`` DICOM SEG for DICOM with ``dicom_seg``: see ``_outputs``); a path that would leave ``out_dir`` (links,
    odd names) or that two inputs would share is refused.  A DICOM input's ``series``
    other than 0 is in the name (``<stem>_series2_labels.nii.gz``): each series of a
    DICOMDIR gets its own output, side by side (``series``: one for all inputs, or one
    per input).
    """
    if output is not None:
        if len(inputs) != 1:
            raise InputError(
                f"-o/--output names one labels file but {len(inputs)} inputs were given: "
                "use --out DIR for several inputs"
            )
        return [(Path(output), None)]
    from ._outputs import output_suffix

    plans: list = []
    root = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        parents = [os.path.abspath(p.parent) for p in inputs]
        try:
            root = os.path.commonpath(parents) if parents else None
        except ValueError:  # different drives
            root = None
    taken: dict = {}
    per_input = list(series) if isinstance(series, (list, tuple)) else [series] * len(inputs)
    for inp, k in zip(inputs, per_input, strict=True):
        tag = f"_series{k}" if k and is_dicom(inp) else ""
        name = stem(inp) + tag + output_suffix(inp, dicom_seg)
        if out_dir is None:
            target = inp.parent / name
        else:
            rel = Path(os.path.relpath(os.path.abspath(inp.parent), root)) if root else Path()
            target = out_dir / rel / name
            if not _inside(os.path.realpath(target), os.path.realpath(out_dir)):
                plans.append((target, f"output {target} would be outside {out_dir}"))
                continue
        key = os.path.normcase(os.path.abspath(target))
        if key in taken:
            plans.append((target, f"output {target} is also the output of {taken[key]}"))
            continue
        taken[key] = inp
        plans.append((target, None))
    return plans


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # another drive
        return False


# ------------------------------------------------------------------------------ read
@dataclass
class Image:
    """One input image: pixels plus what the labels output keeps of it."""

    data: object
    axes: str
    scale: list | None = None
    units: list | None = None
    extra: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # for the file's result (other DICOM series)


def _optional(module: str, *names: str):
    """The first function of ``names`` in ``module``, or None if the module is absent."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return next((getattr(mod, n) for n in names if hasattr(mod, n)), None)


def _from_medical(data, info: dict, kind: str) -> Image:
    """(data, info) of the NIfTI reader (``info["transform"]``) or of one DICOM series
    (``scale``/``translate``/``affine`` at the top of ``info``, ``rgb``)."""
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


_LISTED = 8  # other series named in the note; the rest are counted


def series_label(k: int, entry: dict) -> str:
    """``3 'Routine Brain' (4 images)`` for entry ``k`` of ``io.dicom.list_series``."""
    n = int(entry.get("images", 1))
    return f"{k} '{entry.get('name', '?')}' ({n} image{'s' if n != 1 else ''})"


def other_series_note(path: Path, listing: list[dict], chosen: int) -> str:
    """The note of a DICOM input holding several series, of which one is segmented."""
    n = len(listing)
    others = [series_label(k, e) for k, e in enumerate(listing) if k != chosen]
    listed = ", ".join(others[:_LISTED]) + (
        f" and {len(others) - _LISTED} more" if len(others) > _LISTED else ""
    )
    return (
        f"{path.name} holds {n} DICOM series: segmented {series_label(chosen, listing[chosen])}"
        f"; {len(others)} other {OTHER_SERIES}: {listed}. Pick another with --series N, or "
        f"--series all for every one (series= in segment_files); series N's output is "
        f"{stem(path)}_seriesN_labels.*"
    )


def _read_dicom(path: Path, series: int, all_series: bool) -> Image:
    """One series of a DICOM input; only that one is decoded.  Notes: the series left out
    (or, for one series of ``--series all``, which one this is)."""
    from ..io.dicom import open_series

    listing, found = open_series(path, series)  # headers read once
    n = len(listing)
    if found is None:
        raise InputError(f"{path.name} holds {n} DICOM series: --series {series} does not exist")
    data, info = found
    img = _from_medical(data, info, "dicom")
    img.notes += [str(w) for w in info.get("warnings") or ()]  # missing slices, uneven spacing
    k = series % n
    if n > 1 and all_series:
        img.notes.append(f"DICOM series {k} of {n}: {series_label(k, listing[k])}")
    elif n > 1:
        img.notes.append(other_series_note(path, listing, k))
    return img


def read_image(
    path: Path, series: int = 0, lazy: bool | None = None, all_series: bool = False
) -> Image:
    """Read any supported input: TIFF/OME-TIFF here; NIfTI and DICOM through
    ``napari_sam2.io.nifti.open_nifti`` / ``napari_sam2.io.dicom.open_dicom`` when those
    modules are installed.  ``series``: the TIFF series, or which DICOM series of a folder
    (``all_series``: it is one of a ``--series all`` run; only changes the notes)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    suf = _suffix(path)
    if suf in NIFTI_SUFFIXES or is_dicom(path):
        kind = "nifti" if suf in NIFTI_SUFFIXES else "dicom"
        fn = _optional(f"napari_sam2.io.{kind}", f"open_{kind}")
        if fn is None:
            raise InputError(
                f"{path.name}: reading {kind.upper()} needs napari_sam2.io.{kind} "
                "(a napari-sam2 version with medical formats)"
            )
        if kind == "dicom":
            return _read_dicom(path, series, all_series)
        data, info = fn(path)
        return _from_medical(data, info, kind)
    from ..io.reader import open_tiff

    data, info = open_tiff(path, series=series, lazy=lazy)
    return Image(data, info.axes or "", list(info.scale), list(info.units), {"reader": "tiff"})
