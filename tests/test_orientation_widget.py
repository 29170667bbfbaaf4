"""Segment, commit, refine, undo and propagate on any displayed plane (axial, coronal,
sagittal) of an anisotropic volume and of an oblique NIfTI, in a real viewer with the
weight-free classical backend as the oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_sam2.adapter.orientation import linear_part
from napari_sam2.engine import Segmenter
from napari_sam2.widget._propagate_panel import PropagatePanel
from widget_helpers import TIMEOUT, click, ready_widget, segment_and_wait

SHAPE = (20, 48, 40)  # Z, Y, X
CUBOID = (slice(5, 15), slice(12, 36), slice(8, 30))  # the object, in voxels
OTHER = (slice(3, 17), slice(40, 46), slice(33, 38))  # a second object, never clicked
VOXEL = (9, 22, 17)  # the clicked voxel, inside CUBOID
ORDERS = {  # dims.order -> (the non-displayed axis, the displayed (row, col) axes)
    "axial (Y, X)": ((0, 1, 2), 0),
    "coronal (Z, X)": ((1, 0, 2), 1),
    "sagittal (Z, Y)": ((2, 0, 1), 2),
}


def _volume() -> np.ndarray:
    vol = np.full(SHAPE, 100, np.uint16)
    vol[CUBOID] = 3000
    vol[OTHER] = 3000
    return vol


def _oracle(layer, voxel, axis) -> np.ndarray:
    """The classical backend's object for a click on ``voxel``, segmented on the 2-D
    plane across ``axis`` cut out of the image with numpy (rows: the lower data axis)."""
    return _oracle_of(np.asarray(layer.data), voxel, axis, layer)


def _on_plane(mask2d, voxel, axis) -> np.ndarray:
    """The 2-D ``mask2d`` of the plane across ``axis`` through ``voxel`` as a volume."""
    out = np.zeros(SHAPE, bool)
    sel = [slice(None)] * 3
    sel[axis] = voxel[axis]
    out[tuple(sel)] = mask2d
    return out


def _show(viewer, layer, order, axis, k) -> None:
    """Display ``order`` and move to the plane ``k`` across data ``axis``, the way napari
    slices the layer (its world -> data transform restricted to the non-displayed axis)."""
    viewer.dims.order = order
    lin, t = linear_part(layer)
    inv = np.linalg.inv(lin)
    inv_t = -inv @ t
    viewer.dims.set_point(axis, (k - inv_t[axis]) / inv[axis, axis])


def _click_world(viewer, layer, voxel, axis) -> np.ndarray:
    """The world position where napari *draws* ``voxel`` on the viewed plane: the
    displayed part of the data -> world transform; the viewer's position elsewhere."""
    lin, t = linear_part(layer)
    shown = [a for a in range(3) if a != axis]
    world = np.asarray(viewer.dims.point, float).copy()
    v = np.asarray(voxel, float)
    world[shown] = lin[np.ix_(shown, shown)] @ v[shown] + t[shown]
    return world


def _napari_plane(labels, axis) -> int:
    """The plane of ``labels`` napari shows now across ``axis`` (its own slicing rule)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # napari: non-orthogonal slicing
        point = labels._slice_input.data_slice(labels._data_to_world.inverse).point
    return int(np.round(point[axis]))


def _iou(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _segment_commit(qtbot, viewer, w, layer, order, axis, *, chunked=False):
    _show(viewer, layer, order, axis, VOXEL[axis])
    click(w.session.points_layer, _click_world(viewer, layer, VOXEL, axis))
    segment_and_wait(qtbot, w)
    req = w.session.result.request
    assert req.plane == (VOXEL[axis],) and req.orientation.leading == (axis,)
    if chunked:
        w.committer.sync_px = 0  # the widget's background commit, written in bands
        w.committer.chunk_px = 64
    labels = w.session.labels_layer
    w.commit()
    qtbot.waitUntil(lambda: not w.committer.running and labels.data.any(), timeout=TIMEOUT)
    return labels


@pytest.mark.parametrize("chunked", [False, True], ids=["at-once", "chunked"])
@pytest.mark.parametrize("name", list(ORDERS))
def test_click_commit_undo_on_each_plane_of_an_anisotropic_volume(
    make_napari_viewer, qtbot, name, chunked
):
    order, axis = ORDERS[name]
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0))
    labels = _segment_commit(qtbot, viewer, w, layer, order, axis, chunked=chunked)
    ids = labels.data > 0
    assert labels.data[VOXEL] == 1 and set(np.unique(labels.data)) == {0, 1}
    assert set(np.nonzero(ids)[axis]) == {VOXEL[axis]}  # only on the shown plane
    assert _napari_plane(labels, axis) == VOXEL[axis]  # ...which napari shows
    assert w.session.pick_label(_click_world(viewer, layer, VOXEL, axis)) == 1  # Ctrl-click
    want = _on_plane(_oracle(layer, VOXEL, axis), VOXEL, axis)
    np.testing.assert_array_equal(ids, want)  # exactly the object of that plane
    cuboid = np.zeros(SHAPE, bool)
    cuboid[CUBOID] = True
    assert ids[cuboid & _on_plane(True, VOXEL, axis)].all() and not ids[OTHER].any()
    labels.undo()  # one undo step, in the labels' own axis order
    assert not labels.data.any()
    labels.redo()
    np.testing.assert_array_equal(labels.data == 1, want)


@pytest.mark.parametrize("name", list(ORDERS)[1:])
def test_preview_lies_on_the_shown_plane_and_goes_with_the_view(make_napari_viewer, qtbot, name):
    order, axis = ORDERS[name]
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0))
    layer.units = ("micrometer",) * 3
    _show(viewer, layer, order, axis, VOXEL[axis])
    world = _click_world(viewer, layer, VOXEL, axis)
    click(w.session.points_layer, world)
    segment_and_wait(qtbot, w)
    preview = w.preview.layer
    assert preview.ndim == 3 and preview.visible
    assert tuple(preview.units) == tuple(layer.units)  # no "inconsistent units" warning
    assert preview.get_value(world, world=True) == 1  # drawn under the click
    outside = list(VOXEL)
    outside[axis - 1 if axis else 1] = 2  # same plane, outside the cuboid
    assert preview.get_value(layer.data_to_world(outside), world=True) == 0
    assert w.preview.data.shape == tuple(s for i, s in enumerate(SHAPE) if i != axis)
    viewer.dims.order = (0, 1, 2)  # another view: the preview no longer applies
    assert w.session.result is None and not preview.visible


@pytest.mark.parametrize("name", list(ORDERS)[1:])
def test_refine_on_a_plane_across_the_stack(make_napari_viewer, qtbot, name):
    order, axis = ORDERS[name]
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0))
    labels = _segment_commit(qtbot, viewer, w, layer, order, axis)
    full = labels.data == 1
    sel = [slice(None)] * 3
    sel[axis] = VOXEL[axis]
    plane = labels.data[tuple(sel)]  # a view: cut the object's first rows away
    rows = np.flatnonzero(plane.any(axis=1))
    plane[rows[0]][plane[rows[0]] == 1] = 0
    w.session.points_layer.data = np.empty((0, 3))
    labels.selected_label = 1
    w.refine_check.setChecked(True)
    click(w.session.points_layer, _click_world(viewer, layer, VOXEL, axis))
    segment_and_wait(qtbot, w)
    req = w.session.result.request
    assert req.refine_id == 1
    np.testing.assert_array_equal(req.prompts.objects[0].mask.mask, plane == 1)
    w.commit()
    qtbot.waitUntil(lambda: (labels.data == 1).sum() == full.sum(), timeout=TIMEOUT)
    np.testing.assert_array_equal(labels.data == 1, full)  # the cut rows are back, here only
    labels.undo()
    assert (labels.data == 1).sum() < full.sum()


@pytest.mark.parametrize("name", list(ORDERS)[1:])
def test_propagation_runs_along_the_axis_not_displayed(make_napari_viewer, qtbot, name):
    order, axis = ORDERS[name]
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0), axis_labels=("z", "y", "x"))
    labels = _segment_commit(qtbot, viewer, w, layer, order, axis)
    [panel] = [p for p in w.panels if isinstance(p, PropagatePanel)]
    assert panel.axis_combo.currentData() == 0
    assert panel.axis_combo.currentText() == f"{'zyx'[axis]} (0)"
    # the oracle: the engine on the volume with the displayed axes moved last (numpy)
    axes = (axis, *(a for a in range(3) if a != axis))
    seg = Segmenter(backend="classical").set_image(
        np.transpose(layer.data, axes), contrast_limits=tuple(layer.contrast_limits)
    )
    want = np.transpose(labels.data, axes).copy()
    seg.propagate(
        want,
        (VOXEL[axis],),
        axis=0,
        direction=panel.direction_combo.currentText(),
        mode=panel.mode_combo.currentText(),
    )
    want = np.transpose(want, np.argsort(axes))
    panel.propagate()
    qtbot.waitUntil(lambda: not panel.running, timeout=TIMEOUT)
    assert panel.last_report is not None and panel.last_report.applied
    got = labels.data == 1
    span = np.flatnonzero(got.any(axis=tuple(a for a in range(3) if a != axis)))
    assert len(span) > 5 and VOXEL[axis] in span  # through the object, across the view
    np.testing.assert_array_equal(labels.data, want)
    assert not got[OTHER].any()
    labels.undo()  # the propagation was one undo step
    assert set(np.nonzero(labels.data)[axis]) == {VOXEL[axis]}


@pytest.mark.parametrize("name", list(ORDERS))
def test_tiled_plane_across_the_stack(make_napari_viewer, qtbot, name):
    """Planes larger than the tile: the tile is read from the oriented plane."""
    order, axis = ORDERS[name]
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0))
    w.session.tile_size = 16
    labels = _segment_commit(qtbot, viewer, w, layer, order, axis)
    assert w.session.segmenter.source is not None
    assert set(np.nonzero(labels.data)[axis]) == {VOXEL[axis]}
    assert labels.data[VOXEL] == 1


def _oblique_nifti(tmp_path):
    """A NIfTI of the volume tilted 12 degrees about its first axis, 3 x 0.8 x 0.8 mm."""
    import nibabel as nib

    th = np.deg2rad(12)
    rot = np.array([[1, 0, 0], [0, np.cos(th), -np.sin(th)], [0, np.sin(th), np.cos(th)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 0.8, 3.0])
    aff[:3, 3] = [-20.0, 15.0, 4.0]
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(_volume(), (2, 1, 0)), aff), path)  # x, y, z
    return path


@pytest.mark.parametrize("name", list(ORDERS))
def test_oblique_nifti_in_each_orientation(make_napari_viewer, qtbot, tmp_path, name):
    order, axis = ORDERS[name]
    viewer = make_napari_viewer()
    (layer,) = viewer.open(_oblique_nifti(tmp_path), plugin="napari-sam2")
    from widget_helpers import make_widget

    w = make_widget(viewer)
    # find the cuboid as the reader laid it out (it may flip axes into LPS order)
    bright = np.asarray(layer.data) > 1000
    lab = np.zeros(bright.shape, int)
    from scipy import ndimage as ndi

    lab, _ = ndi.label(bright)
    big = np.argmax(np.bincount(lab.ravel())[1:]) + 1
    cub = lab == big
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(cub))
    voxel = tuple((s.start + s.stop) // 2 for s in box)
    _show(viewer, layer, order, axis, voxel[axis])
    click(w.session.points_layer, _click_world(viewer, layer, voxel, axis))
    segment_and_wait(qtbot, w)
    labels = w.session.labels_layer
    if axis:  # the preview across the stack: one voxel thick, on the labels' own grid
        preview = w.preview.layer
        assert _napari_plane(preview, axis) == 0  # napari shows its only plane here
        q = np.array(voxel, float)
        q[axis] = 0
        np.testing.assert_allclose(preview.data_to_world(q), labels.data_to_world(voxel))
        assert preview.data[tuple(q.astype(int))] == 1
    w.commit()
    qtbot.waitUntil(lambda: labels.data.any(), timeout=TIMEOUT)
    assert labels.data[voxel] == 1  # the clicked voxel got the ID
    assert set(np.nonzero(labels.data)[axis]) == {voxel[axis]}  # only on that plane
    assert _napari_plane(labels, axis) == voxel[axis]  # the plane napari shows
    assert w.session.pick_label(_click_world(viewer, layer, voxel, axis)) == 1
    sel = [slice(None)] * 3
    sel[axis] = voxel[axis]
    np.testing.assert_array_equal(labels.data[tuple(sel)] == 1, _oracle(layer, voxel, axis))
    assert (labels.data[tuple(sel)] == 1)[cub[tuple(sel)]].all()
    labels.undo()
    assert not labels.data.any()


def test_segment_everything_on_a_coronal_plane(make_napari_viewer, qtbot):
    from napari_sam2.widget._everything_panel import EverythingPanel

    order, axis = ORDERS["coronal (Z, X)"]
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0))
    _show(viewer, layer, order, axis, 43)  # y = 43 crosses the second object
    [p] = [p for p in w.panels if isinstance(p, EverythingPanel)]
    p.min_area.setValue(40.0)  # world units²: 10 pixels of 4 x 1 on this plane
    p.run()
    qtbot.waitUntil(lambda: not p.busy, timeout=TIMEOUT)
    plane = np.take(layer.data, 43, axis=axis)
    expected = (
        Segmenter(backend="classical")
        .set_image(plane, contrast_limits=tuple(layer.contrast_limits))
        .segment_everything(min_area=10)
    )
    labels = w.session.labels_layer
    assert expected.max() >= 1
    assert set(np.nonzero(labels.data)[axis]) == {43}  # the shown plane only
    np.testing.assert_array_equal(labels.data[:, 43, :] > 0, expected > 0)
    labels.undo()
    assert not labels.data.any()


def test_a_preview_is_never_committed_on_other_displayed_axes(make_napari_viewer, qtbot):
    """Same plane index, other axes: the preview belongs to another plane."""
    from napari_sam2.engine.errors import PromptError

    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0))
    _show(viewer, layer, (1, 0, 2), 1, 17)  # (Z, X) at y = 17
    click(w.session.points_layer, _click_world(viewer, layer, (9, 17, 17), 1))
    segment_and_wait(qtbot, w)
    res = w.session.result
    _show(viewer, layer, (2, 0, 1), 2, 17)  # (Z, Y) at x = 17: plane index (17,) too
    assert w.session.viewed_plane() == res.request.plane == (17,)
    assert not w.session.is_current(res.request)
    w.session.result = res  # even if a caller kept it
    with pytest.raises(PromptError, match="another plane"):
        w.session.commit()
    assert not w.session.labels_layer.data.any()


def test_embeddings_are_cached_per_orientation(make_napari_viewer, qtbot):
    """Each displayed plane is its own engine plane; coming back to one is a cache hit,
    and an axial plane shown transposed (Ctrl-T) is the axial plane."""
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _volume(), scale=(4.0, 1.0, 1.0))
    stats = w.session.segmenter.stats

    def segment(order, axis):
        w.session.points_layer.data = np.empty((0, 3))
        _show(viewer, layer, order, axis, VOXEL[axis])
        click(w.session.points_layer, _click_world(viewer, layer, VOXEL, axis))
        segment_and_wait(qtbot, w)
        return w.session.result.masks()[0]

    coronal = segment((1, 0, 2), 1)
    sagittal = segment((2, 0, 1), 2)
    assert stats.encodes == 2 and coronal.shape == (20, 40) and sagittal.shape == (20, 48)
    again = segment((1, 0, 2), 1)
    assert stats.encodes == 2 and stats.hits >= 1
    np.testing.assert_array_equal(again, coronal)
    axial = segment((0, 1, 2), 0)
    transposed = segment((0, 2, 1), 0)  # the same plane, shown with rows and columns swapped
    assert stats.encodes == 3
    np.testing.assert_array_equal(transposed, axial)


@pytest.mark.parametrize("lead", ["t", "c"])
def test_a_plane_across_a_4d_stack(make_napari_viewer, qtbot, lead):
    """T, Z, Y, X (or a channel axis C first) showing (Z, X): the index runs over the
    first axis and Y; IDs go to that time point (all channels' labels) and Y plane only."""
    vol = np.stack([np.zeros(SHAPE, np.uint16) + 100, _volume()])  # the object at 1 only
    viewer = make_napari_viewer()
    layer, w = ready_widget(
        viewer, vol, scale=(1.0, 4.0, 1.0, 1.0), axis_labels=(lead, "z", "y", "x")
    )
    viewer.dims.order = (0, 2, 1, 3)
    viewer.dims.set_point(0, 1)
    viewer.dims.set_point(2, VOXEL[1])
    click(w.session.points_layer, (1, *layer.data_to_world((1, *VOXEL))[1:]))
    segment_and_wait(qtbot, w)
    req = w.session.result.request
    labels = w.session.labels_layer
    w.commit()
    qtbot.waitUntil(lambda: labels.data.any(), timeout=TIMEOUT)
    want = _on_plane(_oracle_of(vol[1], VOXEL, 1, layer), VOXEL, 1)
    if lead == "t":
        assert req.plane == (1, VOXEL[1]) and labels.data.shape == vol.shape
        assert not labels.data[0].any()
        np.testing.assert_array_equal(labels.data[1] == 1, want)
    else:  # the channel axis is never a labels axis: the viewed channel 1 is segmented
        assert req.plane == (VOXEL[1],) and labels.data.shape == SHAPE
        np.testing.assert_array_equal(labels.data == 1, want)


def _oracle_of(vol3d, voxel, axis, layer):
    """:func:`_oracle` on a 3-D array, with ``layer``'s contrast limits."""
    plane = np.take(vol3d, voxel[axis], axis=axis)
    seg = Segmenter(backend="classical").set_image(
        plane, contrast_limits=tuple(layer.contrast_limits)
    )
    rc = [v for i, v in enumerate(voxel) if i != axis]
    [pred] = seg.predict(points=np.array([rc]), point_labels=np.array([1]))
    return pred.candidates[0]
