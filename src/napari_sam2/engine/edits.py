"""Plan the label writes of a batch of predicted objects (IDs, keep/overwrite, overlaps)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from . import labels as _labels
from .backends.base import Prediction


def plan_edits(
    labels,
    preds: Sequence[Prediction],
    index,
    *,
    label_id: int | None = None,
    policy: str = "keep",
    replace: bool = False,
    start_id: int | None = None,
):
    """One :class:`LabelEdit` per prediction that changes pixels.

    ``label_id`` writes every object under that ID (refinement); otherwise IDs are
    consecutive from ``start_id`` (default ``max(labels) + 1``, computed once).  An object
    that changes nothing (empty mask, or with the ``keep`` policy a mask lying entirely
    on other objects) gets no edit and consumes no ID.  Each edit's ``object_index`` is the
    position of its prediction in ``preds``.

    All edits are planned against ``labels`` as it is now and applied in order; with the
    ``keep`` policy, pixels claimed by an earlier object of the same batch are therefore
    left out of the later objects (else a later object would take them over).  With
    ``overwrite`` later objects win overlaps, and an object that the later ones cover
    entirely gets no edit and no ID (it would vanish under them).
    """
    next_id = None
    if label_id is None:
        next_id = _labels.next_label_id(labels) if start_id is None else int(start_id)
    edits = []
    claimed = None  # plane pixels written by earlier objects of this batch
    hidden = None
    if policy != _labels.KEEP and label_id is None:
        hidden = _covered_by_later(preds, labels.shape[-2:])
    for k, p in enumerate(preds):
        whole = p.plane_mask(labels.shape[-2:])  # bbox-local masks of tiled planes
        mask = whole
        if claimed is not None and policy == _labels.KEEP:
            mask = mask & ~claimed
        if hidden is not None and not (whole & ~hidden[k]).any():
            continue  # "overwrite": later objects of the batch cover it all, no ID for it
        if not mask.any():
            continue
        lid = label_id if label_id is not None else next_id
        edit = _labels.plan_object_write(
            labels, mask, index=tuple(index), label_id=lid, policy=policy, replace=replace
        )
        if not edit.size:  # nothing changes: no edit, the ID stays free
            continue
        edits.append(dataclasses.replace(edit, object_index=k))
        if claimed is None:
            claimed = np.zeros(mask.shape, bool)
        mine = edit.values == edit.label_id
        claimed[edit.indices[-2][mine], edit.indices[-1][mine]] = True
        if label_id is None:
            next_id += 1
    return edits


def _covered_by_later(preds: Sequence[Prediction], shape) -> list[np.ndarray]:
    """For each prediction, the union of the masks of the predictions after it."""
    out: list = [None] * len(preds)
    acc = None
    for k in range(len(preds) - 1, -1, -1):
        m = np.asarray(preds[k].plane_mask(shape), bool)
        out[k] = np.zeros(m.shape, bool) if acc is None else acc.copy()
        acc = m.copy() if acc is None else (acc | m)
    return out
