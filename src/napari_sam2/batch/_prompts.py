"""Prompts per file and plane, from a prompt CSV, a napari Points/Shapes CSV export, or the
command line.

Prompt CSV (one row per point or box; see docs/batch.md)::

    file,plane,kind,coordinates,label
    cells.tif,,point,"120,85",
    cells.tif,,negative,"130,90",
    stack.tif,12,box,"10,10,60,80",3

napari exports (``layer.save("x.csv")``): Points ``index,axis-0,...[,positive,...]``;
Shapes ``index,shape-type,vertex-index,axis-0,...``.  The last two axes are (row, col),
the leading ones the plane.  Coordinates are taken as data pixels of the image.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.formats import stem

POINT_KINDS = {"point": 1, "positive": 1, "negative": 0}
BOX_KINDS = ("box", "rectangle")
OURS = ("file", "kind", "coordinates")


class PromptFileError(ValueError):
    """A prompt CSV cannot be understood (the message names the file and row)."""


@dataclass
class PlanePrompts:
    """The prompts of one plane: loose points/boxes/polygons, and objects with an ID."""

    points: list = field(default_factory=list)
    point_labels: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    polygons: list = field(default_factory=list)
    labelled: dict = field(default_factory=dict)  # id -> {"points", "point_labels", "box"}
    notes: list = field(default_factory=list)

    def add_point(self, rc, positive: int, label: int | None = None) -> None:
        if label is None:
            self.points.append(tuple(rc))
            self.point_labels.append(int(positive))
        else:
            obj = self._obj(label)
            obj["points"].append(tuple(rc))
            obj["point_labels"].append(int(positive))

    def add_box(self, box, label: int | None = None) -> None:
        if label is None:
            self.boxes.append(tuple(box))
        else:
            obj = self._obj(label)
            if obj["box"] is not None:
                raise PromptFileError(f"object {label} has two boxes on one plane")
            obj["box"] = tuple(box)

    def _obj(self, label: int) -> dict:
        return self.labelled.setdefault(
            int(label), {"points": [], "point_labels": [], "box": None}
        )

    def objects(self, plane_shape) -> list:
        """``[(label_id or None, ObjectPrompt)]``: labelled objects first, in ID order."""
        from skimage.draw import polygon2mask

        from ..engine.prompts import Box, ObjectPrompt, Points, make_objects

        out = []
        for lid in sorted(self.labelled):
            o = self.labelled[lid]
            pts = Points(o["points"], o["point_labels"]) if o["points"] else None
            box = Box(*o["box"]) if o["box"] is not None else None
            out.append((lid, ObjectPrompt(points=pts, box=box, label_id=lid)))
        masks = [polygon2mask(tuple(plane_shape), np.asarray(p)) for p in self.polygons]
        masks = [m for m in masks if m.any()]
        if self.points or self.boxes or masks:
            loose = make_objects(
                self.points or None,
                self.point_labels or None,
                self.boxes or None,
                np.stack(masks) if masks else None,
            )
            out += [(None, o) for o in loose]
        return out


FilePrompts = dict  # plane tuple -> PlanePrompts


def _numbers(text: str, where: str) -> list[float]:
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise PromptFileError(f"{where}: {text!r} is not a list of numbers") from None


def _plane(text: str, where: str) -> tuple[int, ...]:
    vals = _numbers(text or "", where)
    if any(v != int(v) or v < 0 for v in vals):
        raise PromptFileError(f"{where}: plane {text!r} must be non-negative integers")
    return tuple(int(v) for v in vals)


@dataclass
class PromptTable:
    """Prompts read from CSV files: per input file, and for every input."""

    by_path: dict = field(default_factory=dict)  # resolved path str -> FilePrompts
    by_name: dict = field(default_factory=dict)  # bare file name -> FilePrompts
    exports: list = field(default_factory=list)  # napari exports: [(csv stem, FilePrompts)]
    sources: list = field(default_factory=list)

    def for_file(self, path, stems=None) -> FilePrompts | None:
        """The prompts of one input (merged from every CSV that names it), or None.

        A napari export named ``<stem>.csv`` or ``<stem>_....csv`` belongs to the input
        of that stem; one that matches none of ``stems`` (all inputs' stems; default:
        only this one's) applies to every input.
        """
        p = Path(path)
        found = []
        key = str(p.resolve())
        if key in self.by_path:
            found.append(self.by_path[key])
        elif p.name in self.by_name:
            found.append(self.by_name[p.name])
        mine = stem(p)
        stems = {mine} if stems is None else set(stems)
        for csv_stem, fp in self.exports:
            if _belongs(csv_stem, mine) or not any(_belongs(csv_stem, s) for s in stems):
                found.append(fp)
        return merge(found) if found else None

    def unused(self, inputs) -> list[str]:
        """The files named in prompt CSVs that match none of ``inputs``."""
        paths = {str(Path(p).resolve()) for p in inputs}
        names = {Path(p).name for p in inputs}
        return sorted(
            [k for k in self.by_path if k not in paths]
            + [n for n in self.by_name if n not in names]
        )

    def read(self, csv_path) -> PromptTable:
        """Add one CSV (prompt CSV or napari Points/Shapes export)."""
        csv_path = Path(csv_path)
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise PromptFileError(f"cannot read prompts {csv_path}: {e}") from e
        if not rows:
            raise PromptFileError(f"{csv_path} has no prompt rows")
        cols = {c.strip().lower() for c in rows[0] if c}
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in rows]
        if set(OURS) <= cols:
            self._read_ours(rows, csv_path)
        elif "axis-0" in cols:
            self.exports.append((csv_path.stem, _read_napari(rows, csv_path)))
        else:
            raise PromptFileError(
                f"{csv_path}: unknown columns {sorted(cols)}; expected file,plane,kind,"
                "coordinates,label or a napari Points/Shapes export (index,axis-0,...)"
            )
        self.sources.append(str(csv_path))
        return self

    def _read_ours(self, rows, csv_path: Path) -> None:
        for n, r in enumerate(rows, start=2):
            where = f"{csv_path.name} row {n}"
            name = r.get("file", "")
            if not name:
                raise PromptFileError(f"{where}: empty 'file'")
            kind = r.get("kind", "").lower()
            coords = _numbers(r.get("coordinates", ""), where)
            label = r.get("label", "")
            try:
                lid = int(label) if label else None
            except ValueError:
                raise PromptFileError(f"{where}: label {label!r} is not an integer") from None
            if lid is not None and lid < 1:
                raise PromptFileError(f"{where}: label must be >= 1")
            here = (csv_path.parent / name).resolve()
            if Path(name).name != name and here.exists():  # a path: that file only
                fp = self.by_path.setdefault(str(here), {})
            else:  # a bare name: every input of that name (also one next to the CSV)
                fp = self.by_name.setdefault(Path(name).name, {})
            pp = fp.setdefault(_plane(r.get("plane", ""), where), PlanePrompts())
            if kind in POINT_KINDS:
                if len(coords) != 2:
                    raise PromptFileError(
                        f"{where}: a point needs 'r,c', got {len(coords)} numbers"
                    )
                pp.add_point(coords, POINT_KINDS[kind], lid)
            elif kind in BOX_KINDS:
                if len(coords) != 4:
                    raise PromptFileError(f"{where}: a box needs 'r0,c0,r1,c1'")
                pp.add_box(coords, lid)
            else:
                raise PromptFileError(f"{where}: kind {kind!r} is not point, negative or box")


def _belongs(csv_stem: str, image_stem: str) -> bool:
    """``cells_points`` / ``cells-shapes`` / ``cells`` belong to the image ``cells``."""
    return csv_stem == image_stem or (
        csv_stem.startswith(image_stem) and csv_stem[len(image_stem)] in "_-."
    )


def _axes_cols(row: dict) -> list[str]:
    cols = sorted((c for c in row if re.fullmatch(r"axis-\d+", c)), key=lambda c: int(c[5:]))
    if len(cols) < 2:
        raise PromptFileError("a napari export needs at least axis-0 and axis-1")
    return cols


def _truthy(text: str) -> bool:
    """napari writes feature columns as ``True``/``False`` or ``1.0``/``0.0``."""
    t = (text or "true").strip().lower()
    try:
        return float(t) != 0
    except ValueError:
        return t not in ("false", "no", "n", "f")


def _read_napari(rows, csv_path: Path) -> FilePrompts:
    fp: FilePrompts = {}
    axes = _axes_cols(rows[0])
    where = csv_path.name
    vals = np.array([[float(r[c] or "nan") for c in axes] for r in rows], float)
    if not np.isfinite(vals).all():
        raise PromptFileError(f"{where}: empty or non-numeric coordinates")
    if "shape-type" not in rows[0]:  # Points
        pos = [_truthy(r.get("positive", "true")) for r in rows]
        for v, p in zip(vals, pos, strict=True):
            plane = tuple(int(round(x)) for x in v[:-2])
            fp.setdefault(plane, PlanePrompts()).add_point(v[-2:], int(p))
        return fp
    shapes: dict = {}
    for r, v in zip(rows, vals, strict=True):
        shapes.setdefault(r.get("index", ""), (r.get("shape-type", ""), []))[1].append(v)
    for kind, verts in shapes.values():
        verts = np.asarray(verts)
        plane = tuple(int(round(x)) for x in verts[0, :-2])
        pp = fp.setdefault(plane, PlanePrompts())
        rc = verts[:, -2:]
        if kind == "rectangle":
            pp.add_box((*rc.min(axis=0), *rc.max(axis=0)))
        elif kind == "polygon":
            pp.polygons.append(rc.tolist())
        elif kind == "ellipse":
            c, a, b = rc.mean(axis=0), (rc[1] - rc[0]) / 2, (rc[3] - rc[0]) / 2
            t = np.linspace(0, 2 * np.pi, 72, endpoint=False)[:, None]
            pp.polygons.append((c + np.cos(t) * a + np.sin(t) * b).tolist())
        else:
            pp.notes.append(f"{kind} shape ignored: use rectangles (boxes) or polygons")
    return fp


def merge(items) -> FilePrompts:
    """One FilePrompts from several (same plane: prompts are concatenated)."""
    out: FilePrompts = {}
    for fp in items:
        for plane, pp in fp.items():
            tgt = out.setdefault(plane, PlanePrompts())
            tgt.points += pp.points
            tgt.point_labels += pp.point_labels
            tgt.boxes += pp.boxes
            tgt.polygons += pp.polygons
            tgt.notes += pp.notes
            for lid, o in pp.labelled.items():
                if lid in tgt.labelled:
                    raise PromptFileError(f"object {lid} is given twice on plane {plane}")
                tgt.labelled[lid] = o
    return out


def from_lists(points=(), negative=(), boxes=(), plane=()) -> FilePrompts:
    """Command-line prompts (``--points/--negative/--boxes/--plane``) as FilePrompts."""
    if not (points or negative or boxes):
        return {}
    pp = PlanePrompts()
    for rc in points:
        pp.add_point(rc, 1)
    for rc in negative:
        pp.add_point(rc, 0)
    for b in boxes:
        pp.add_box(b)
    return {tuple(plane): pp}
