"""Inputs, outputs and reading: glob expansion, output paths that stay inside the output
folder, the one reader entry point (:func:`napari_sam2.io.formats.read_image`) with the
notes a batch reports, complete-output checks, atomic writes."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..io import formats
from ..io.formats import IMAGE_SUFFIXES, Image, is_dicom, labels_output_suffix, stem, suffix
from ._results import OTHER_SERIES

LABELS_SUFFIX = "_labels"
PARTIAL = ".partial-"
COMMAND = "napari-sam2 segment"


class InputError(ValueError):
    """An input cannot be used (the message names it)."""


def is_labels_name(path: Path) -> bool:
    """True for ``*_labels.tif`` and the like: outputs and ground truth, not inputs."""
    return stem(path).lower().endswith(LABELS_SUFFIX)


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
            if f.is_dir() and not formats.is_dicom_dir(f):
                found_in = sorted(
                    c for c in f.iterdir() if c.is_file() and suffix(c) in IMAGE_SUFFIXES
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
                from ..io.medical.dicom import list_series

                n = max(1, len(list_series(p)))
            except (OSError, ValueError):  # read again (and reported) as a job
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
        name = stem(inp) + tag + labels_output_suffix(inp, dicom_seg)
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
_LISTED = 8  # other series named in the note; the rest are counted


def series_label(k: int, entry: dict) -> str:
    """``3 'Routine Brain' (4 images)`` for entry ``k`` of ``io.medical.dicom.list_series``."""
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


def read_image(
    path: Path, series: int = 0, lazy: bool | None = None, all_series: bool = False
) -> Image:
    """Read any supported input (:func:`napari_sam2.io.formats.read_image`: TIFF/OME-TIFF,
    NIfTI, one series of a DICOM file or folder), with the notes of a batch result: for a
    DICOM input of several series, the series left out (or, for one series of a
    ``--series all`` run, ``all_series``, which one this is)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    img = formats.read_image(path, series=series, lazy=lazy)
    n = len(img.series)
    k = series % n if n else 0
    if n > 1 and all_series:
        img.notes.append(f"DICOM series {k} of {n}: {series_label(k, img.series[k])}")
    elif n > 1:
        img.notes.append(other_series_note(path, img.series, k))
    return img
