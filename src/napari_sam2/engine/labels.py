"""Write object masks into an integer labels array.

The unit of work is a :class:`LabelEdit`: the coordinates and new values of exactly the
pixels that change, inside the object's bounding box.  The napari adapter hands an edit to
``Labels.data_setitem`` (one undo step); scripts apply it to a numpy array with
:func:`apply_edit`.  Nothing here copies the whole labels volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LabelsError

KEEP = "keep"  # pixels of other objects stay theirs
OVERWRITE = "overwrite"  # the new object takes every pixel of its mask
POLICIES = (KEEP, OVERWRITE)


@dataclass(frozen=True)
class LabelEdit:
    """The pixels an object write changes.

    ``indices`` is a tuple of 1-D int arrays, one per labels axis (numpy fancy index);
    ``values`` the new values there; ``label_id`` the object's ID; ``object_index`` the
    position of the object (prediction/prompt) it comes from in its batch, when planned
    by :func:`napari_sam2.engine.edits.plan_edits` (provenance uses it).
    """

    indices: tuple[np.ndarray, ...]
    values: np.ndarray
    label_id: int
    object_index: int | None = None

    @property
    def size(self) -> int:
        return int(self.values.size)


def next_label_id(labels) -> int:
    """Current maximum label + 1 (1 for an empty array)."""
    if labels.size == 0:
        return 1
    return int(np.max(labels)) + 1


def check_labels(labels, plane_shape, index) -> None:
    if labels.dtype.kind not in "iu":
        raise LabelsError(f"Labels must be an integer array, got dtype {labels.dtype}.")
    if tuple(labels.shape[-2:]) != tuple(plane_shape):
        raise LabelsError(
            f"Labels of shape {tuple(labels.shape)} do not match the image plane {tuple(plane_shape)}."
        )
    if len(index) != labels.ndim - 2:
        raise LabelsError(
            f"Labels have {labels.ndim} dims; plane index {tuple(index)} needs {len(index) + 2}."
        )
    for i, n in zip(index, labels.shape[:-2], strict=True):
        if not 0 <= i < n:
            raise LabelsError(
                f"Plane index {tuple(index)} is outside labels shape {labels.shape}."
            )


def check_stack_labels(labels, source) -> None:
    """``labels`` must be an integer array of the image's non-channel shape (whole stack)."""
    expected = tuple(source.index_shape) + tuple(source.plane_shape)
    if tuple(labels.shape) != expected:
        raise LabelsError(
            f"Labels of shape {tuple(labels.shape)} do not match the image ({expected})."
        )
    if labels.dtype.kind not in "iu":
        raise LabelsError(f"Labels must be an integer array, got dtype {labels.dtype}.")


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def plan_object_write(
    labels,
    mask: np.ndarray,
    *,
    index: tuple[int, ...] = (),
    label_id: int | None = None,
    policy: str = KEEP,
    replace: bool = False,
) -> LabelEdit:
    """Compute the edit that writes ``mask`` as one object on plane ``index`` of ``labels``.

    Parameters
    ----------
    labels : (..., H, W) integer array
    mask : (H, W) bool array
        The object on that plane.
    index : tuple of int
        Indices of the leading axes (e.g. ``(z,)``) selecting the plane.
    label_id : int, optional
        ID to write; default: ``max(labels) + 1``.
    policy : {"keep", "overwrite"}
        ``keep``: pixels that belong to *another* object stay theirs;
        ``overwrite``: the object takes its whole mask.
    replace : bool
        The object ``label_id`` is being refined: its old pixels on this plane that the
        new mask does not cover are cleared to 0.
    """
    if policy not in POLICIES:
        raise LabelsError(f"policy must be one of {POLICIES}, not {policy!r}.")
    index = tuple(int(i) for i in index)
    mask = np.asarray(mask, dtype=bool)
    check_labels(labels, mask.shape, index)
    if label_id is None:
        label_id = next_label_id(labels)
    label_id = int(label_id)
    if label_id <= 0:
        raise LabelsError(f"Label IDs must be positive, got {label_id}.")
    if label_id > np.iinfo(labels.dtype).max:
        raise LabelsError(f"Label {label_id} does not fit the labels dtype {labels.dtype}.")

    box = _bbox(mask)
    old_box = None
    if replace:
        plane = np.asarray(labels[index])
        old_box = _bbox(plane == label_id)
    if box is None and old_box is None:
        return LabelEdit(
            tuple(np.empty(0, np.intp) for _ in range(labels.ndim)),
            np.empty(0, labels.dtype),
            label_id,
        )
    if box is not None and old_box is not None:
        box = tuple(
            slice(min(a.start, b.start), max(a.stop, b.stop))
            for a, b in zip(box, old_box, strict=True)
        )
    elif box is None:
        box = old_box

    region = np.asarray(labels[index + box])
    m = mask[box]
    new = region.copy()
    if replace:
        new[region == label_id] = 0
    writable = m if policy == OVERWRITE else m & ((region == 0) | (region == label_id))
    new[writable] = label_id
    changed = new != region
    rr, cc = np.nonzero(changed)
    rr = rr + box[0].start
    cc = cc + box[1].start
    lead = tuple(np.full(rr.shape, i, dtype=np.intp) for i in index)
    return LabelEdit(lead + (rr.astype(np.intp), cc.astype(np.intp)), new[changed], label_id)


def apply_edit(labels: np.ndarray, edit: LabelEdit) -> np.ndarray:
    """Apply an edit in place to a numpy (or zarr) labels array; returns ``labels``."""
    if edit.size:
        labels[edit.indices] = edit.values
    return labels


def write_object(labels: np.ndarray, mask: np.ndarray, **kwargs) -> int:
    """Plan and apply in one go (see :func:`plan_object_write`); returns the label ID."""
    edit = plan_object_write(labels, mask, **kwargs)
    apply_edit(labels, edit)
    return edit.label_id
