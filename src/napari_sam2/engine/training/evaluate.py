"""Measure a segmenter on labelled images with a simulated annotator (simulated clicks).

The protocol of the interactive-segmentation literature (and micro-sam's evaluation), per
ground-truth object of one plane:

1. first prompt: a positive point at the object's interior (the maximum of its distance
   transform, the image border counting as background) or the object's bounding box;
2. then corrective clicks: the largest connected error region (false negative: the object
   pixels missed; false positive: the pixels wrongly added) is found, and a click is put at
   its centre (the maximum of its distance transform): positive in a missed region,
   negative in a false one.  Every click so far (and the box) is given again each time;
3. the IoU with the ground truth is recorded after each prompt, up to ``n_clicks`` prompts
   (the first prompt counts as click 1).  A perfect mask needs no more clicks: its IoU
   (1.0) is carried forward.

Everything is deterministic: ties go to the first pixel in row-major order; ``seed`` only
chooses which objects are measured when ``max_objects`` is smaller than their number.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cancel import check_cancel
from ..errors import LabelsError
from ..prompts import Box, ObjectPrompt, Points
from .annotator import corrective_click, interior_point, iou

FIRST = ("point", "box")
CSV_COLUMNS = ("image", "plane", "label_id", "clicks", "iou")


@dataclass
class EvalResult:
    """IoU of each ground-truth object after each prompt.

    ``iou`` is (n_objects, n_clicks): ``iou[i, k - 1]`` is object ``label_ids[i]`` after
    ``k`` prompts.  ``clicks`` holds each object's prompts as ``(row, col, positive)``.
    """

    label_ids: list[int]
    iou: np.ndarray
    first: str
    plane: tuple[int, ...] = ()
    image: str = ""
    backend: str = ""
    clicks: dict = field(default_factory=dict)

    @property
    def n_clicks(self) -> int:
        return int(self.iou.shape[1])

    @property
    def mean_iou(self) -> np.ndarray:
        """Mean IoU over the objects after 1, 2, ... ``n_clicks`` prompts."""
        if not len(self.label_ids):
            return np.full(self.n_clicks, np.nan)
        return self.iou.mean(axis=0)

    def rows(self) -> list[dict]:
        """One row per object and click count (the CSV's rows)."""
        plane = ",".join(map(str, self.plane))
        return [
            {"image": self.image, "plane": plane, "label_id": int(lid), "clicks": k + 1,
             "iou": round(float(self.iou[i, k]), 6)}
            for i, lid in enumerate(self.label_ids)
            for k in range(self.n_clicks)
        ]  # fmt: skip

    def to_dict(self) -> dict:
        return {
            "image": self.image,
            "plane": list(self.plane),
            "backend": self.backend,
            "first": self.first,
            "n_objects": len(self.label_ids),
            "mean_iou": _floats(self.mean_iou),
            "objects": {str(lid): _floats(self.iou[i]) for i, lid in enumerate(self.label_ids)},
            "clicks": {str(k): v for k, v in self.clicks.items()},
        }

    def to_csv(self, path) -> Path:
        return write_csv([self], path)

    def to_json(self, path) -> Path:
        return write_json([self], path)

    def plot(self, path) -> Path | None:
        return plot_curves([self], path)


def evaluate(
    segmenter,
    image,
    gt_labels,
    *,
    plane=(),
    n_clicks: int = 5,
    first: str = "point",
    seed: int = 0,
    max_objects: int | None = None,
    cancel=None,
    progress=None,
    name: str = "",
    **image_kwargs,
) -> EvalResult:
    """Simulate an annotator on every object of ``gt_labels`` (see the module docstring).

    ``image`` is given to ``segmenter.set_image`` (with ``image_kwargs``), or None to keep
    the segmenter's current image.  ``gt_labels`` has the image's non-channel shape or the
    plane's shape.  ``progress(done, total)`` is called after each object; ``cancel`` is a
    ``threading.Event`` (:class:`Cancelled` once set).
    """
    if first not in FIRST:
        raise ValueError(f"first must be one of {FIRST}, not {first!r}.")
    if int(n_clicks) < 1:
        raise ValueError(f"n_clicks must be at least 1, not {n_clicks!r}.")
    n_clicks = int(n_clicks)
    if image is not None:
        segmenter.set_image(image, **image_kwargs)
    src = segmenter.require_source()
    index = src.check_index(plane)
    gt = np.asarray(gt_labels)
    if gt.shape == src.index_shape + src.plane_shape:
        gt = gt[index]
    elif gt.shape != tuple(src.plane_shape):
        raise LabelsError(
            f"Ground-truth labels of shape {gt.shape} match neither the image "
            f"({src.index_shape + src.plane_shape}) nor its plane ({src.plane_shape})."
        )
    if not (np.issubdtype(gt.dtype, np.integer) or gt.dtype == bool):
        raise LabelsError(f"Ground-truth labels must be integers, not {gt.dtype}.")
    ids = [int(v) for v in np.unique(gt) if v > 0]
    if max_objects is not None and len(ids) > max_objects:
        pick = np.random.default_rng(seed).choice(len(ids), int(max_objects), replace=False)
        ids = [ids[i] for i in sorted(pick)]
    ious = np.zeros((len(ids), n_clicks))
    clicks: dict = {}
    for i, lid in enumerate(ids):
        check_cancel(cancel, "Evaluation cancelled.")
        ious[i], clicks[lid] = _simulate(segmenter, index, gt == lid, n_clicks, first)
        if progress is not None:
            progress(i + 1, len(ids))
    backend = str(segmenter.describe().get("backend", getattr(segmenter.backend, "name", "")))
    return EvalResult(ids, ious, first, tuple(index), name, backend, clicks)


def _simulate(segmenter, index, obj: np.ndarray, n_clicks: int, first: str):
    """IoU after each of ``n_clicks`` prompts for one object, and the prompts given."""
    box = None
    coords: list[tuple[float, float]] = []
    labels: list[int] = []
    if first == "box":
        rows = np.flatnonzero(obj.any(axis=1))
        cols = np.flatnonzero(obj.any(axis=0))
        box = Box(rows[0], cols[0], rows[-1], cols[-1])
    else:
        coords.append(interior_point(obj))
        labels.append(1)
    out = np.zeros(n_clicks)
    for k in range(n_clicks):
        points = Points(np.asarray(coords, float).reshape(-1, 2), np.asarray(labels))
        [pred] = segmenter.predict(index, objects=[ObjectPrompt(points, box)])
        mask = np.asarray(pred.plane_mask(obj.shape), dtype=bool)
        out[k] = iou(mask, obj)
        if out[k] == 1.0:
            out[k:] = 1.0
            break
        if k + 1 < n_clicks:
            point, positive = corrective_click(mask, obj)
            coords.append(point)
            labels.append(int(positive))
    given = [[int(r), int(c), bool(p)] for (r, c), p in zip(coords, labels, strict=True)]
    return out, ({"box": box.as_array().tolist()} if box else {}) | {"points": given}


# ---------------------------------------------------------------------------- outputs
def overall_mean(results) -> np.ndarray:
    """Mean IoU per click count over all objects of all results (object-weighted)."""
    stacked = [r.iou for r in results if len(r.label_ids)]
    if not stacked:
        n = results[0].n_clicks if results else 0
        return np.full(n, np.nan)
    return np.concatenate(stacked).mean(axis=0)


def write_csv(results, path) -> Path:
    """Long table: one row per image, object and click count (``CSV_COLUMNS``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in results:
            w.writerows(r.rows())
    return path


def write_json(results, path, **extra) -> Path:
    """Per-image curves and per-object IoUs, plus the overall mean curve."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "protocol": "simulated annotator: first prompt, then corrective clicks at the "
        "centre of the largest error region",
        **extra,
        "mean_iou": _floats(overall_mean(results)),
        "n_objects": sum(len(r.label_ids) for r in results),
        "images": [r.to_dict() for r in results],
    }
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def plot_curves(results, path, title: str = "") -> Path | None:
    """mIoU against the number of clicks (one line per image, the overall mean in bold).

    Returns None when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend is touched
    except ImportError:
        return None
    fig = Figure(figsize=(5, 3.6), dpi=100)
    ax = fig.add_subplot()
    for r in results if len(results) > 1 else ():
        ax.plot(range(1, r.n_clicks + 1), r.mean_iou, alpha=0.4, label=r.image or None)
    mean = overall_mean(results)
    ax.plot(range(1, len(mean) + 1), mean, "k-o", lw=2, label="all objects")
    ax.set_xlabel("clicks (first prompt included)")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(1, len(mean) + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    if title:
        ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _floats(values) -> list:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in values]
