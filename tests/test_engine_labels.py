"""Writing object masks into labels: IDs, keep/overwrite, refinement, bbox-local edits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine.errors import LabelsError
from napari_sam2.engine.labels import (
    LabelEdit,
    apply_edit,
    next_label_id,
    plan_object_write,
    write_object,
)


def _rect(shape, r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def _bounds(edit: LabelEdit):
    return [(int(ix.min()), int(ix.max())) for ix in edit.indices]


def test_next_label_id():
    assert next_label_id(np.zeros((4, 4), np.int32)) == 1
    assert next_label_id(np.array([[0, 3], [9, 2]])) == 10
    assert next_label_id(np.zeros((0, 4), np.int32)) == 1


def test_new_object_gets_max_plus_one_and_only_its_pixels():
    labels = np.zeros((40, 50), np.int32)
    labels[0:3, 0:3] = 4
    mask = _rect(labels.shape, 10, 20, 15, 30)
    before = labels.copy()
    lid = write_object(labels, mask)
    assert lid == 5
    assert (labels[mask] == 5).all()
    np.testing.assert_array_equal(labels[~mask], before[~mask])


def test_edit_touches_only_the_bbox():
    labels = np.zeros((3, 40, 50), np.int32)
    mask = np.zeros((40, 50), bool)
    mask[12:18, 20:24] = True
    mask[15, 30] = True  # the bbox spans rows 12..17, cols 20..30
    edit = plan_object_write(labels, mask, index=(1,))
    assert isinstance(edit, LabelEdit)
    assert edit.size == int(mask.sum())
    assert _bounds(edit) == [(1, 1), (12, 17), (20, 30)]
    assert all(ix.dtype == np.intp for ix in edit.indices)
    assert edit.values.dtype == labels.dtype
    apply_edit(labels, edit)
    assert (labels[0] == 0).all() and (labels[2] == 0).all()
    np.testing.assert_array_equal(labels[1] == edit.label_id, mask)


def test_keep_policy_protects_other_objects():
    labels = np.zeros((30, 30), np.uint16)
    labels[5:15, 5:10] = 3  # an existing object inside the new mask's area
    mask = _rect(labels.shape, 5, 15, 5, 20)
    lid = write_object(labels, mask, policy="keep")
    assert lid == 4
    assert (labels[5:15, 5:10] == 3).all()
    assert (labels[5:15, 10:20] == 4).all()


def test_overwrite_policy_takes_the_whole_mask():
    labels = np.zeros((30, 30), np.uint16)
    labels[5:15, 5:10] = 3
    labels[20:25, 20:25] = 7  # outside the mask: untouched
    mask = _rect(labels.shape, 5, 15, 5, 20)
    lid = write_object(labels, mask, policy="overwrite")
    assert lid == 8
    assert (labels[mask] == 8).all()
    assert (labels[20:25, 20:25] == 7).all()
    assert (labels == 3).sum() == 0


def test_given_id_and_replace_refines_an_object():
    labels = np.zeros((30, 40), np.int32)
    labels[2:12, 2:12] = 5  # old version of object 5
    labels[20:25, 30:35] = 5  # object 5 elsewhere on the plane (old pixels too)
    labels[14:18, 14:18] = 2  # a neighbour
    new = _rect(labels.shape, 8, 16, 8, 16)  # overlaps old 5 and the neighbour
    edit = plan_object_write(labels, new, label_id=5, replace=True)
    # the edit covers the union of the new mask's and the old object's bboxes
    (r_lo, r_hi), (c_lo, c_hi) = _bounds(edit)
    assert r_lo >= 2 and r_hi <= 24 and c_lo >= 2 and c_hi <= 34
    apply_edit(labels, edit)
    assert edit.label_id == 5
    np.testing.assert_array_equal(labels == 5, new & (labels != 2))
    assert (labels[14:16, 14:16] == 2).all()  # keep policy still protects the neighbour
    assert (labels[20:25, 30:35] == 0).all()


def test_given_id_without_replace_adds_pixels():
    labels = np.zeros((20, 20), np.int32)
    labels[0:5, 0:5] = 5
    write_object(labels, _rect(labels.shape, 10, 15, 10, 15), label_id=5)
    assert (labels[0:5, 0:5] == 5).all() and (labels[10:15, 10:15] == 5).all()


def test_replace_with_empty_mask_clears_the_object():
    labels = np.zeros((20, 20), np.int32)
    labels[3:6, 3:6] = 9
    labels[10:12, 10:12] = 1
    edit = plan_object_write(labels, np.zeros((20, 20), bool), label_id=9, replace=True)
    apply_edit(labels, edit)
    assert (labels == 9).sum() == 0 and (labels == 1).sum() == 4


def test_replace_acts_on_its_plane_only():
    labels = np.zeros((2, 20, 20), np.int32)
    labels[:, 3:6, 3:6] = 9
    write_object(labels, _rect((20, 20), 10, 12, 10, 12), index=(1,), label_id=9, replace=True)
    assert (labels[0, 3:6, 3:6] == 9).all()
    assert (labels[1] == 9).sum() == 4


def test_empty_mask_is_an_empty_edit():
    labels = np.ones((10, 10), np.int32)
    edit = plan_object_write(labels, np.zeros((10, 10), bool))
    assert edit.size == 0 and len(edit.indices) == 2
    before = labels.copy()
    apply_edit(labels, edit)
    np.testing.assert_array_equal(labels, before)


def test_unchanged_pixels_are_not_in_the_edit():
    labels = np.zeros((20, 20), np.int32)
    mask = _rect(labels.shape, 2, 8, 2, 8)
    write_object(labels, mask, label_id=3)
    again = plan_object_write(labels, mask, label_id=3)
    assert again.size == 0


@pytest.mark.parametrize(
    ("labels", "mask", "kwargs", "match"),
    [
        (np.zeros((10, 12), np.int32), np.ones((12, 10), bool), {}, "do not match"),
        (np.zeros((10, 10), np.float32), np.ones((10, 10), bool), {}, "integer"),
        (np.zeros((2, 10, 10), np.int32), np.ones((10, 10), bool), {}, "plane index"),
        (np.zeros((2, 10, 10), np.int32), np.ones((10, 10), bool), {"index": (2,)}, "outside"),
        (np.zeros((10, 10), np.int32), np.ones((10, 10), bool), {"label_id": 0}, "positive"),
        (np.zeros((10, 10), np.uint8), np.ones((10, 10), bool), {"label_id": 300}, "dtype"),
        (np.zeros((10, 10), np.int32), np.ones((10, 10), bool), {"policy": "merge"}, "policy"),
    ],
)
def test_labels_errors(labels, mask, kwargs, match):
    with pytest.raises(LabelsError, match=match):
        plan_object_write(labels, mask, **kwargs)


def test_new_id_overflowing_dtype_is_an_error():
    labels = np.full((4, 4), 255, np.uint8)
    with pytest.raises(LabelsError, match="does not fit"):
        plan_object_write(labels, np.ones((4, 4), bool))


def test_apply_edit_to_zarr_labels():
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store={}, shape=(2, 16, 16), chunks=(1, 16, 16), dtype="int32")
    z[:] = 0
    mask = _rect((16, 16), 4, 9, 3, 7)
    mask[12, 14] = True  # a second, separate part: coordinate (not orthogonal) indexing
    edit = plan_object_write(z, mask, index=(1,))
    apply_edit(z, edit)
    np.testing.assert_array_equal(np.asarray(z[1]) == 1, mask)
    assert (np.asarray(z[0]) == 0).all()
