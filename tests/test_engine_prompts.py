"""Prompt objects: data pixel (row, col) coordinates, validation, grouping into objects."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine.errors import PromptError
from napari_sam2.engine.prompts import Box, MaskPrompt, ObjectPrompt, Points, make_objects


# ------------------------------------------------------------------------------ points
def test_points_normalise_shapes_and_split_by_label():
    p = Points([[1, 2], [3, 4], [5, 6]], [1, 0, 1])
    assert p.coords.shape == (3, 2) and p.coords.dtype == np.float64
    assert p.labels.dtype == np.int64
    np.testing.assert_array_equal(p.positive, [[1, 2], [5, 6]])
    np.testing.assert_array_equal(p.negative, [[3, 4]])
    assert len(p) == 3


def test_points_from_lists_orders_positive_then_negative():
    p = Points.from_lists(positive=[(1, 2)], negative=[(3, 4), (5, 6)])
    np.testing.assert_array_equal(p.labels, [1, 0, 0])
    np.testing.assert_array_equal(p.coords[0], [1, 2])


@pytest.mark.parametrize(
    ("coords", "labels", "match"),
    [
        ([[1, 2], [3, 4]], [1], "2 point coordinates but 1 point labels"),
        ([[1, np.nan]], [1], "finite"),
        ([[np.inf, 1]], [1], "finite"),
        ([[1, 2]], [2], "1 \\(positive\\) or 0"),
        ([[1, 2]], [-1], "1 \\(positive\\) or 0"),
    ],
)
def test_points_reject_bad_input(coords, labels, match):
    with pytest.raises(PromptError, match=match):
        Points(coords, labels)


# ------------------------------------------------------------------------------- boxes
def test_box_any_corner_order():
    a = Box(30, 40, 10, 5)
    assert (a.r0, a.c0, a.r1, a.c1) == (10, 5, 30, 40)
    assert Box(10, 40, 30, 5) == a
    np.testing.assert_array_equal(a.as_array(), [10, 5, 30, 40])


def test_box_from_corners_of_a_rectangle():
    b = Box.from_corners([[10, 5], [10, 40], [30, 40], [30, 5]])
    assert (b.r0, b.c0, b.r1, b.c1) == (10, 5, 30, 40)
    with pytest.raises(PromptError):
        Box.from_corners([[1, 2]])


def test_box_clipped_to_plane_and_outside_is_an_error():
    b = Box(-5, -3, 20, 200).clipped((50, 100))
    assert (b.r0, b.c0, b.r1, b.c1) == (0, 0, 20, 99)
    with pytest.raises(PromptError, match="outside the image plane of shape 50x100"):
        Box(60, 10, 80, 20).clipped((50, 100))
    with pytest.raises(PromptError, match="outside"):
        Box(-10, -10, -1, -1).clipped((50, 100))


def test_box_slices_are_inclusive_and_contains():
    b = Box(2, 3, 5, 7)
    rs, cs = b.slices()
    assert (rs.start, rs.stop, cs.start, cs.stop) == (2, 6, 3, 8)
    inside = b.contains([[2, 3], [5, 7], [4, 5], [6, 5], [4, 8]])
    np.testing.assert_array_equal(inside, [True, True, True, False, False])


def test_box_rejects_nan():
    with pytest.raises(PromptError, match="finite"):
        Box(0, 0, np.nan, 3)


# ------------------------------------------------------------------------------- masks
def test_mask_prompt_bbox_and_validation():
    m = np.zeros((20, 30), bool)
    m[4:9, 10:21] = True
    mp = MaskPrompt(m.astype(np.uint8))
    assert mp.mask.dtype == bool
    b = mp.bbox()
    assert (b.r0, b.c0, b.r1, b.c1) == (4, 10, 8, 20)
    with pytest.raises(PromptError, match="empty"):
        MaskPrompt(np.zeros((5, 5)))
    with pytest.raises(PromptError, match="2-D"):
        MaskPrompt(np.ones((2, 5, 5)))


# ----------------------------------------------------------------------- object prompt
def test_object_prompt_needs_something():
    with pytest.raises(PromptError, match="at least one point, a box or a mask"):
        ObjectPrompt()
    with pytest.raises(PromptError, match="at least one point"):
        ObjectPrompt(points=Points(np.empty((0, 2)), np.empty(0)))


def test_only_negative_points_are_rejected():
    with pytest.raises(PromptError, match="Only negative points"):
        ObjectPrompt(points=Points([[3, 4], [5, 6]], [0, 0]))
    # a negative point with a box is fine: the box says which object
    ObjectPrompt(points=Points([[3, 4]], [0]), box=Box(0, 0, 10, 10))


def test_validated_names_the_point_outside():
    obj = ObjectPrompt(points=Points([[10, 10], [12.0, 130.0]], [1, 1]))
    with pytest.raises(PromptError) as info:
        obj.validated((64, 128))
    msg = str(info.value)
    assert "row=12" in msg and "col=130" in msg and "64x128" in msg
    # edge pixels (and half a pixel around them) are inside
    ObjectPrompt(points=Points([[0, 0], [63.4, 127.4], [-0.5, -0.5]], [1, 1, 1])).validated(
        (64, 128)
    )
    with pytest.raises(PromptError, match="row=-1"):
        ObjectPrompt(points=Points([[-1, 5]], [1])).validated((64, 128))


def test_validated_clips_box_and_checks_mask_shape():
    obj = ObjectPrompt(box=Box(-4, -4, 100, 20), label_id=7, meta={"a": 1})
    v = obj.validated((50, 60))
    assert (v.box.r0, v.box.c0, v.box.r1, v.box.c1) == (0, 0, 49, 20)
    assert v.label_id == 7 and v.meta == {"a": 1}
    m = np.zeros((10, 10), bool)
    m[2, 2] = True
    with pytest.raises(PromptError, match="does not match the plane 50x60"):
        ObjectPrompt(mask=MaskPrompt(m)).validated((50, 60))


def test_single_point_and_to_dict():
    one = ObjectPrompt(points=Points([[1, 2]], [1]))
    assert one.single_point
    assert not ObjectPrompt(points=Points([[1, 2], [3, 4]], [1, 0])).single_point
    assert not ObjectPrompt(points=Points([[1, 2]], [1]), box=Box(0, 0, 5, 5)).single_point
    d = ObjectPrompt(points=Points([[1, 2]], [1]), box=Box(0, 0, 5, 5), label_id=3).to_dict()
    assert d == {
        "points_rc": [[1.0, 2.0]],
        "point_labels": [1],
        "box_rc": [0.0, 0.0, 5.0, 5.0],
        "label_id": 3,
    }


# ------------------------------------------------------------------------ make_objects
def test_make_objects_points_only_is_one_object():
    objs = make_objects(points=[(1, 2), (3, 4)], point_labels=[1, 0])
    assert len(objs) == 1
    np.testing.assert_array_equal(objs[0].points.labels, [1, 0])
    # default labels: all positive
    [obj] = make_objects(points=[(1, 2), (3, 4)])
    np.testing.assert_array_equal(obj.points.labels, [1, 1])


def test_make_objects_points_join_their_box():
    objs = make_objects(
        points=[(5, 5), (55, 55), (6, 6)],
        point_labels=[1, 1, 0],
        boxes=[(0, 0, 10, 10), (50, 50, 60, 60), (20, 20, 30, 30)],
    )
    assert len(objs) == 3
    np.testing.assert_array_equal(objs[0].points.coords, [[5, 5], [6, 6]])
    np.testing.assert_array_equal(objs[0].points.labels, [1, 0])
    np.testing.assert_array_equal(objs[1].points.coords, [[55, 55]])
    assert objs[2].points is None
    assert (objs[2].box.r0, objs[2].box.c1) == (20, 30)


def test_make_objects_several_boxes_and_stray_point_is_an_error():
    with pytest.raises(PromptError, match="every point must lie inside"):
        make_objects(points=[(40, 40)], boxes=[(0, 0, 10, 10), (50, 50, 60, 60)])


def test_make_objects_one_box_takes_outside_points():
    [obj] = make_objects(points=[(5, 5), (40, 40)], point_labels=[1, 0], boxes=[(0, 0, 10, 10)])
    np.testing.assert_array_equal(obj.points.coords, [[5, 5], [40, 40]])
    np.testing.assert_array_equal(obj.points.labels, [1, 0])


def test_make_objects_masks():
    m = np.zeros((2, 8, 8), bool)
    m[0, 1, 1] = m[1, 5, 5] = True
    objs = make_objects(masks=m)
    assert len(objs) == 2 and all(o.mask is not None for o in objs)
    [obj] = make_objects(points=[(1, 1)], masks=m[0])
    assert obj.mask is not None and obj.points is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"points": []},
        {"points": np.empty((0, 2))},
        {"boxes": np.empty((0, 4))},
        {"points": [], "boxes": []},
    ],
)
def test_make_objects_empty_is_an_error(kwargs):
    with pytest.raises(PromptError, match="No prompt"):
        make_objects(**kwargs)


def test_make_objects_only_negative_is_an_error():
    with pytest.raises(PromptError, match="Only negative"):
        make_objects(points=[(1, 2)], point_labels=[0])
