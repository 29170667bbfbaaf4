"""The data side of fine-tuning: planes with their cached embeddings, the objects of the
labels, the train/validation split and the prompts simulated from each object.

Prompts follow the evaluation protocol (:mod:`napari_sam2.engine.training.evaluate`): a first prompt
(a positive point inside the object, or its box) then corrective clicks at the centre of the
largest error region.  For training the first prompt is randomised (any pixel of the object,
a box with jittered corners); validation uses exactly the deterministic first prompts of the
evaluation (the interior point, the exact box).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backends.base import SamFeatures
from ..cancel import check_cancel
from ..errors import LabelsError
from ..prompts import Box, ObjectPrompt, Points
from .annotator import interior_point

BOX_JITTER = 0.1  # std of a box corner's noise, as a fraction of the box side (SAM: 0.1)
BOX_JITTER_MAX = 20.0  # pixels (SAM: 20)


@dataclass
class TrainPlane:
    """One labelled plane: its labels and, once encoded, its embedding (float32 tensors on
    the training device).  ``image``/``image_kwargs`` say how the segmenter reads it."""

    name: str
    index: tuple[int, ...]
    labels: np.ndarray  # (H, W) int, the plane's ground truth
    image: object = field(default=None, repr=False)
    image_kwargs: dict = field(default_factory=dict, repr=False)
    embedding: SamFeatures | None = field(default=None, repr=False)

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.labels.shape)


@dataclass(frozen=True)
class TrainObject:
    """One ground-truth object: the plane it is on (position in the plane list) and its ID."""

    plane: int
    label_id: int
    area: int


def check_labels(src, gt, name: str) -> np.ndarray:
    """``gt`` as an integer array of the image's non-channel shape (or its plane's, for 2-D)."""
    gt = np.asarray(gt)
    full = tuple(src.index_shape) + tuple(src.plane_shape)
    if gt.shape == tuple(src.plane_shape) and src.index_shape:
        raise LabelsError(
            f"Labels of {name} have the shape of one plane {gt.shape}, but the image has "
            f"several planes {full}: give labels of the image's shape."
        )
    if gt.shape != full:
        raise LabelsError(f"Labels of {name} have shape {gt.shape}, but the image needs {full}.")
    if not (np.issubdtype(gt.dtype, np.integer) or gt.dtype == bool):
        raise LabelsError(f"Labels of {name} must be integers, not {gt.dtype}.")
    return gt


def labelled_planes(src, gt, planes=None) -> list[tuple[int, ...]]:
    """The plane indices to train on: ``planes`` (checked) or every plane holding a label."""
    if planes is not None:
        return [src.check_index(p) for p in planes]
    out = []
    for idx in np.ndindex(*src.index_shape):
        if np.any(gt[idx] > 0):
            out.append(tuple(int(v) for v in idx))
    return out


def list_planes(segmenter, items) -> list[TrainPlane]:
    """The labelled planes of ``items``, ``(image, labels, image_kwargs, planes, name)``
    tuples, checked against the images as ``segmenter`` reads them (nothing is encoded)."""
    out = []
    for image, labels, kwargs, planes, name in items:
        segmenter.set_image(image, **(kwargs or {}))
        src = segmenter.source
        gt = check_labels(src, labels, name)
        for idx in labelled_planes(src, gt, planes):
            lab = np.array(gt[idx], copy=True)
            out.append(TrainPlane(name, idx, lab, image, dict(kwargs or {})))
    return out


def encode_planes(segmenter, planes, device, *, cancel=None, progress=None) -> None:
    """Encode each plane once with ``segmenter`` (its cache, its normalisation: exactly the
    inference input).  The embeddings are copied out of inference mode (so that autograd may
    use them) as float32 on ``device``.  ``progress(done, total)`` after each plane."""
    import torch

    current = None
    for i, plane in enumerate(planes):
        check_cancel(cancel, "Fine-tuning cancelled.")
        if current is not plane.image:
            segmenter.set_image(plane.image, **plane.image_kwargs)
            current = plane.image
        emb = segmenter.embedding(plane.index, cancel=cancel)
        with torch.inference_mode(False):
            plane.embedding = SamFeatures.of(emb).to(device, torch.float32)
        if progress is not None:
            progress(i + 1, len(planes))


def collect_objects(
    planes: list[TrainPlane], *, min_area: int = 4, max_objects: int | None = None, seed=0
) -> list[TrainObject]:
    """Every object of at least ``min_area`` pixels; at most ``max_objects`` per plane."""
    rng = np.random.default_rng(seed)
    out = []
    for p, plane in enumerate(planes):
        ids, areas = np.unique(plane.labels[plane.labels > 0], return_counts=True)
        objs = [TrainObject(p, int(i), int(a)) for i, a in zip(ids, areas, strict=True)]
        objs = [o for o in objs if o.area >= min_area]
        if max_objects is not None and len(objs) > max_objects:
            pick = sorted(rng.choice(len(objs), int(max_objects), replace=False))
            objs = [objs[i] for i in pick]
        out.extend(objs)
    return out


def split_objects(objects, planes, val_fraction: float, seed: int = 0, by: str = "object"):
    """(train, val) lists: a seeded random split of the objects, or of the images (by name:
    all objects of an image go to the same side; needs two images at least)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction!r}.")
    rng = np.random.default_rng(seed)
    if by == "object":
        keys = list(range(len(objects)))
        key_of = list(range(len(objects)))
    elif by == "image":
        keys = sorted({planes[o.plane].name for o in objects})
        if len(keys) < 2 and val_fraction > 0:
            raise ValueError("split='image' needs at least two images; use split='object'.")
        key_of = [keys.index(planes[o.plane].name) for o in objects]
        keys = list(range(len(keys)))
    else:
        raise ValueError(f"split must be 'object' or 'image', not {by!r}.")
    n_val = 0
    if val_fraction > 0 and len(keys) >= 2:
        n_val = min(max(int(round(len(keys) * val_fraction)), 1), len(keys) - 1)
    val = set(rng.permutation(len(keys))[:n_val].tolist())
    train = [o for o, k in zip(objects, key_of, strict=True) if k not in val]
    return train, [o for o, k in zip(objects, key_of, strict=True) if k in val]


# --------------------------------------------------------------------------- prompts
def object_mask(plane: TrainPlane, obj: TrainObject) -> np.ndarray:
    return plane.labels == obj.label_id


def exact_box(mask: np.ndarray) -> Box:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return Box(rows[0], cols[0], rows[-1], cols[-1])


def random_first_prompt(rng, mask: np.ndarray, p_box: float = 0.5) -> ObjectPrompt:
    """A positive click on a random pixel of the object, or its box with jittered corners."""
    h, w = mask.shape
    if rng.random() < p_box:
        b = exact_box(mask)
        side = np.array([b.r1 - b.r0 + 1, b.c1 - b.c0 + 1] * 2, float)
        noise = rng.normal(0.0, 1.0, 4) * np.minimum(side * BOX_JITTER, BOX_JITTER_MAX)
        r0, c0, r1, c1 = np.array([b.r0, b.c0, b.r1, b.c1]) + noise
        return ObjectPrompt(box=Box(r0, c0, r1, c1).clipped((h, w)))
    rows, cols = np.nonzero(mask)
    k = int(rng.integers(len(rows)))
    return ObjectPrompt(points=Points([[rows[k], cols[k]]], [1]))


def eval_first_prompts(mask: np.ndarray) -> dict[str, ObjectPrompt]:
    """The evaluation's deterministic first prompts: the interior point and the exact box."""
    return {
        "point": ObjectPrompt(points=Points([interior_point(mask)], [1])),
        "box": ObjectPrompt(box=exact_box(mask)),
    }


def add_click(prompt: ObjectPrompt, rc, positive: bool) -> ObjectPrompt:
    """``prompt`` with one more click (a corrective click of the evaluation protocol)."""
    coords = np.asarray([rc], float)
    labels = np.asarray([int(positive)])
    if prompt.points is not None:
        coords = np.concatenate([prompt.points.coords, coords])
        labels = np.concatenate([prompt.points.labels, labels])
    return ObjectPrompt(points=Points(coords, labels), box=prompt.box)


def batches(objects, batch_size: int, rng) -> list[list[TrainObject]]:
    """One epoch: objects shuffled within their plane, cut into batches of one plane each,
    the batches in random order."""
    by_plane: dict[int, list[TrainObject]] = {}
    for o in objects:
        by_plane.setdefault(o.plane, []).append(o)
    out = []
    for p in sorted(by_plane):
        objs = by_plane[p]
        order = rng.permutation(len(objs))
        objs = [objs[i] for i in order]
        out += [objs[i : i + batch_size] for i in range(0, len(objs), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]
