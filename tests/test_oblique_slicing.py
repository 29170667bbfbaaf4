"""Oblique volumes: the widget segments the plane napari shows and writes only that plane.

napari slices a layer whose transform couples Z/T with the displayed axes (an oblique
NIfTI affine, a light-sheet shear) without the out-of-plane part: the shown plane is not
the one ``layer.world_to_data`` of the viewer position gives.  Found as a new user on
``example4d.nii.gz`` (EPI, ~9 degrees oblique): the click was segmented on plane 14 while
napari showed plane 18, and napari's in-place slice update then copied the object onto
plane 18 as well.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.adapter.coords import slices_obliquely, world_to_shown_data
from napari_sam2.adapter.layers import write_edits
from napari_sam2.engine.labels import LabelEdit
from napari_sam2.io.medical.nifti import read_nifti
from widget_helpers import TIMEOUT, click, make_widget

OBLIQUE = "medical/example4d.nii.gz"


def _shown_plane(layer) -> int:
    """The Z plane napari draws for a (t, z, y, x) layer (checked against its pixels)."""
    raw = np.asarray(layer._slice.image.raw)
    t = int(np.round(layer._data_slice.point[0]))
    hits = [z for z in range(layer.data.shape[1]) if np.array_equal(raw, layer.data[t, z])]
    assert len(hits) == 1
    return hits[0]


@pytest.fixture
def oblique(shared_data, make_napari_viewer):
    ((data, kwargs, kind),) = read_nifti(shared_data / OBLIQUE)
    viewer = make_napari_viewer()
    image = viewer.add_image(data, **kwargs)
    # viewer position at display voxel (t=1, z=14, y=48, x=64): with this tilt napari
    # shows another plane than the full inverse transform of that point
    world = np.asarray(image.data_to_world((1, 14, 48, 64)), float)
    viewer.dims.set_point(0, world[0])
    viewer.dims.set_point(1, world[1])
    return viewer, image, world


def test_plane_is_the_one_napari_shows(oblique):
    viewer, image, world = oblique
    assert slices_obliquely(image)
    shown = _shown_plane(image)
    full = int(np.round(image.world_to_data(viewer.dims.point)[1]))
    assert shown != full  # the case this test is about
    data = world_to_shown_data(image, np.asarray(viewer.dims.point, float))
    assert int(np.round(data[1])) == shown


def test_click_segments_and_writes_only_the_shown_plane(oblique, qtbot):
    viewer, image, world = oblique
    w = make_widget(viewer)
    shown = _shown_plane(image)
    assert w.session.viewed_plane() == (1, shown)
    world = np.asarray(world, float)
    world[:2] = np.asarray(viewer.dims.point)[:2]  # a click on the canvas: at the slider
    click(w.session.points_layer, world)
    w.session.result = None
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)
    assert w.session.result.request.plane == (1, shown)
    w.commit()
    labels = w.session.labels_layer
    planes = {tuple(p) for p in np.argwhere(labels.data.any(axis=(2, 3)))}
    assert planes == {(1, shown)}
    # the voxel napari shows under the click is in the object
    r, c = np.round(world_to_shown_data(image, world)[2:]).astype(int)
    assert labels.data[1, shown, r, c] == 1
    labels.undo()
    assert not labels.data.any()


def test_write_on_a_hidden_plane_leaves_the_shown_plane_alone(oblique):
    viewer, image, _ = oblique
    labels = viewer.add_labels(
        np.zeros(image.data.shape, np.uint16), affine=image.affine, scale=image.scale
    )
    shown = _shown_plane(image)
    # the plane napari takes for the visible one when it updates the shown slice in place
    other = int(np.round(labels.world_to_data(viewer.dims.point)[1]))
    assert other != shown
    rr, cc = np.mgrid[10:20, 30:40]
    n = rr.size
    idx = (np.full(n, 1), np.full(n, other), rr.ravel(), cc.ravel())
    assert write_edits(labels, [LabelEdit(idx, np.full(n, 3, np.uint16), 3)]) == [3]
    assert (labels.data[1, other] == 3).sum() == n
    assert not labels.data[1, shown].any()
    assert (labels.data == 3).sum() == n
    labels.undo()
    assert not labels.data.any()


def test_sheared_light_sheet_stack_segments_the_shown_plane(
    make_napari_viewer, qtbot, shared_data
):
    """A z→x shear (deskewed light-sheet data): napari shows plane 60 where the full
    inverse transform of the viewer position says plane 42."""
    data = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8.tif")
    gt = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8_labels.tif")
    viewer = make_napari_viewer()
    image = viewer.add_image(data, scale=(0.28, 0.127, 0.127), shear=(0.0, 0.8, 0.0))
    w = make_widget(viewer)
    viewer.dims.set_point(0, 60 * 0.28)
    assert np.array_equal(np.asarray(image._slice.image.raw), data[60])
    assert w.session.viewed_plane() == (60,)
    lid = int(np.bincount(gt[60][gt[60] > 0]).argmax())
    rr, cc = np.nonzero(gt[60] == lid)
    r, c = int(np.median(rr)), int(np.median(cc))
    # where napari draws pixel (r, c) of the shown plane: the in-plane part of the transform
    origin = np.asarray(image.data_to_world((0, 0, 0)), float)
    lin = np.stack([np.asarray(image.data_to_world(e), float) - origin for e in np.eye(3)], axis=1)
    world = np.r_[viewer.dims.point[0], lin[1:, 1:] @ (r, c) + origin[1:]]
    click(w.session.points_layer, world)
    w.session.result = None
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)
    w.commit()
    labels = w.session.labels_layer.data
    assert set(np.flatnonzero(labels.any(axis=(1, 2)))) == {60}
    assert labels[60, r, c] == 1
    iou = ((labels[60] == 1) & (gt[60] == lid)).sum() / ((labels[60] == 1) | (gt[60] == lid)).sum()
    assert iou > 0.7
