"""Prompt objects, in *data pixel coordinates (row, col)* of one 2-D plane.

These are the only prompt types the engine knows.  The conversion to SAM's (x, y)
order happens in exactly one place: :func:`napari_sam2.engine.backends._sam_common.to_xy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import PromptError


@dataclass(frozen=True)
class Points:
    """Clicks on one object.

    Parameters
    ----------
    coords : (N, 2) float array
        (row, col) positions in data pixels of the plane.
    labels : (N,) int array
        1 for a positive (foreground) click, 0 for a negative (background) click.
    """

    coords: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        coords = as_rows(self.coords, 2, "Point coordinates", "(row, col)")
        labels = _as_numbers(self.labels, "Point labels")
        if labels.ndim > 1 or not np.all(labels == np.round(labels)):
            raise PromptError(
                f"Point labels must be a list of 1 (positive) or 0 (negative), got {labels!r}."
            )
        labels = labels.astype(np.int64).reshape(-1)
        if len(coords) != len(labels):
            raise PromptError(f"{len(coords)} point coordinates but {len(labels)} point labels.")
        if not np.all(np.isfinite(coords)):
            raise PromptError("Point coordinates must be finite numbers.")
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise PromptError("Point labels must be 1 (positive) or 0 (negative).")
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "labels", labels)

    @classmethod
    def from_lists(cls, positive: Iterable = (), negative: Iterable = ()) -> Points:
        pos = np.asarray(list(positive), dtype=float).reshape(-1, 2)
        neg = np.asarray(list(negative), dtype=float).reshape(-1, 2)
        return cls(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def positive(self) -> np.ndarray:
        return self.coords[self.labels == 1]

    @property
    def negative(self) -> np.ndarray:
        return self.coords[self.labels == 0]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box given by two opposite corners (row, col), in any order."""

    r0: float
    c0: float
    r1: float
    c1: float

    def __post_init__(self):
        vals = np.array([self.r0, self.c0, self.r1, self.c1], dtype=float)
        if not np.all(np.isfinite(vals)):
            raise PromptError("Box corners must be finite numbers.")
        top, bottom = sorted((float(self.r0), float(self.r1)))
        left, right = sorted((float(self.c0), float(self.c1)))
        object.__setattr__(self, "r0", top)
        object.__setattr__(self, "r1", bottom)
        object.__setattr__(self, "c0", left)
        object.__setattr__(self, "c1", right)

    @classmethod
    def from_corners(cls, corners) -> Box:
        """Box spanning all given (row, col) vertices (e.g. a napari rectangle's 4 corners)."""
        pts = np.asarray(corners, dtype=float).reshape(-1, 2)
        if len(pts) < 2:
            raise PromptError("A box needs at least two corners.")
        return cls(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())

    def clipped(self, shape: Sequence[int]) -> Box:
        """This box clipped to a plane of ``shape`` (H, W); raises if it lies outside.

        Like a point, a corner may lie on the outer edge of the border pixels (-0.5 and
        H - 0.5): a box drawn along the image's edge is inside.
        """
        h, w = int(shape[0]), int(shape[1])
        if self.r1 < -0.5 or self.c1 < -0.5 or self.r0 > h - 0.5 or self.c0 > w - 0.5:
            raise PromptError(
                f"Box ({self.r0:g}, {self.c0:g})-({self.r1:g}, {self.c1:g}) lies outside the "
                f"image plane of shape {h}x{w}."
            )
        return Box(
            min(max(self.r0, 0.0), h - 1),
            min(max(self.c0, 0.0), w - 1),
            min(max(self.r1, 0.0), h - 1),
            min(max(self.c1, 0.0), w - 1),
        )

    def contains(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, dtype=float).reshape(-1, 2)
        return (
            (coords[:, 0] >= self.r0)
            & (coords[:, 0] <= self.r1)
            & (coords[:, 1] >= self.c0)
            & (coords[:, 1] <= self.c1)
        )

    def slices(self) -> tuple[slice, slice]:
        """Integer slices covering the box (inclusive of both corners' pixels)."""
        return (
            slice(int(np.floor(self.r0 + 0.5)), int(np.floor(self.r1 + 0.5)) + 1),
            slice(int(np.floor(self.c0 + 0.5)), int(np.floor(self.c1 + 0.5)) + 1),
        )

    def as_array(self) -> np.ndarray:
        return np.array([self.r0, self.c0, self.r1, self.c1], dtype=float)


@dataclass(frozen=True)
class MaskPrompt:
    """A binary mask of the plane, used as a dense prompt (e.g. to refine an object)."""

    mask: np.ndarray

    def __post_init__(self):
        m = np.asarray(self.mask)
        if m.ndim != 2:
            raise PromptError(f"A mask prompt must be 2-D, got shape {m.shape}.")
        m = m.astype(bool, copy=False)
        if not m.any():
            raise PromptError("The mask prompt is empty (no pixel set).")
        object.__setattr__(self, "mask", m)

    def bbox(self) -> Box:
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        return Box(rows[0], cols[0], rows[-1], cols[-1])


@dataclass(frozen=True)
class ObjectPrompt:
    """Everything that describes one object: points and/or a box and/or a mask."""

    points: Points | None = None
    box: Box | None = None
    mask: MaskPrompt | None = None
    label_id: int | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.points is not None and len(self.points) == 0:
            object.__setattr__(self, "points", None)
        if self.points is None and self.box is None and self.mask is None:
            raise PromptError("An object prompt needs at least one point, a box or a mask.")
        only_points = self.points is not None and self.box is None and self.mask is None
        if only_points and not (self.points.labels == 1).any():
            raise PromptError(
                "Only negative points were given: add a positive point or a box "
                "to say which object to segment."
            )

    def validated(self, shape: Sequence[int]) -> ObjectPrompt:
        """Check the prompt against a plane of ``shape`` (H, W); clip the box."""
        h, w = int(shape[0]), int(shape[1])
        if self.points is not None:
            c = self.points.coords
            outside = (
                (c[:, 0] < -0.5) | (c[:, 0] > h - 0.5) | (c[:, 1] < -0.5) | (c[:, 1] > w - 0.5)
            )
            if outside.any():
                bad = c[outside][0]
                raise PromptError(
                    f"Point (row={bad[0]:g}, col={bad[1]:g}) lies outside the image plane "
                    f"of shape {h}x{w}."
                )
        if self.mask is not None and self.mask.mask.shape != (h, w):
            raise PromptError(
                f"Mask prompt of shape {self.mask.mask.shape} does not match the plane {h}x{w}."
            )
        box = self.box.clipped((h, w)) if self.box is not None else None
        return ObjectPrompt(self.points, box, self.mask, self.label_id, dict(self.meta))

    @property
    def single_point(self) -> bool:
        """True for one click and nothing else: the ambiguous case where multimask helps."""
        return (
            self.box is None
            and self.mask is None
            and self.points is not None
            and len(self.points) == 1
        )

    def to_dict(self) -> dict:
        """JSON-friendly description (for provenance)."""
        d: dict = {}
        if self.points is not None:
            d["points_rc"] = self.points.coords.round(3).tolist()
            d["point_labels"] = self.points.labels.tolist()
        if self.box is not None:
            d["box_rc"] = [round(v, 3) for v in self.box.as_array().tolist()]
        if self.mask is not None:
            d["mask_pixels"] = int(self.mask.mask.sum())
        if self.label_id is not None:
            d["label_id"] = int(self.label_id)
        return d


def make_objects(points=None, point_labels=None, boxes=None, masks=None) -> list[ObjectPrompt]:
    """Build object prompts from plain arrays (the scripted API's convenience form).

    - ``boxes`` (B, 4) as (r0, c0, r1, c1): one object per box; points lying inside a box
      join that box's object (SAM 2's points+box prompt); with several boxes, points
      outside every box are an error.
    - points without boxes: one object made of all points.
    - ``masks`` (M, H, W) or (H, W): one object per mask (points join the single mask when
      there is exactly one mask and no box).
    """
    pts = None
    if points is not None:
        coords = as_rows(points, 2, "Points", "(row, col)")
        lab = np.ones(len(coords)) if point_labels is None else point_labels
        pts = Points(coords, lab)
        if len(pts) == 0:
            pts = None
    box_list = []
    if boxes is not None:
        box_list = [Box(*b) for b in as_rows(boxes, 4, "Boxes", "(r0, c0, r1, c1)")]
    mask_list = []
    if masks is not None:
        m = np.asarray(masks)
        if m.ndim == 2:
            m = m[None]
        mask_list = [MaskPrompt(x) for x in m]

    objects: list[ObjectPrompt] = []
    used = np.zeros(len(pts) if pts is not None else 0, dtype=bool)
    for box in box_list:
        sub = None
        if pts is not None:
            inside = box.contains(pts.coords) & ~used
            if inside.any():
                sub = Points(pts.coords[inside], pts.labels[inside])
                used |= inside
        objects.append(ObjectPrompt(points=sub, box=box))
    if pts is not None and not used.all():
        rest = Points(pts.coords[~used], pts.labels[~used])
        if box_list and len(box_list) > 1:
            raise PromptError(
                "With several boxes, every point must lie inside one of them "
                f"({int((~used).sum())} point(s) do not)."
            )
        if box_list:
            # one box: outside points still refine that object
            objects[0] = ObjectPrompt(points=_concat(objects[0].points, rest), box=box_list[0])
        elif len(mask_list) == 1:
            return [ObjectPrompt(points=rest, mask=mask_list[0])]
        else:
            objects.append(ObjectPrompt(points=rest))
    objects.extend(ObjectPrompt(mask=m) for m in mask_list)
    if not objects:
        raise PromptError("No prompt given: add a point, a box or a mask.")
    return objects


def _as_numbers(value, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:  # ragged lists, text
        raise PromptError(f"{what} must be an array of numbers ({e}).") from None
    return arr


def as_rows(value, width: int, what: str, row: str) -> np.ndarray:
    """``value`` as a float (N, width) array; one row may be given flat, as (width,).

    Anything else (e.g. (N, 3) points, which a reshape would silently turn into other
    points) is a :class:`PromptError`.
    """
    arr = _as_numbers(value, what)
    if arr.size == 0:
        return arr.reshape(0, width)
    if arr.shape == (width,):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise PromptError(
            f"{what} must be an (N, {width}) array of {row} rows, got shape {arr.shape}."
        )
    return arr


def _concat(a: Points | None, b: Points) -> Points:
    if a is None:
        return b
    return Points(np.concatenate([a.coords, b.coords]), np.concatenate([a.labels, b.labels]))
