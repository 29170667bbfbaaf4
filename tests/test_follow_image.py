"""The widget's labels layer follows the image when the user sets its pixel size later.

Found as a new user: the bacteria time-lapse has no pixel size; after docking, the scale
was set to (10 s, 0.065 um, 0.065 um).  The labels layer kept scale 1: the commit said
"Wrote label(s) 1" but the object was drawn at another time point, far from the cell.
"""

from __future__ import annotations

import numpy as np
import tifffile

from widget_helpers import click, ready_widget, segment_and_wait

SCALE = (10.0, 0.065, 0.065)


def test_labels_follow_a_new_scale_and_the_object_lands_under_the_click(
    make_napari_viewer, qtbot, shared_data
):
    img = tifffile.imread(shared_data / "bacteria_phase_tyx_uint8.tif")
    gt = tifffile.imread(shared_data / "bacteria_phase_tyx_uint8_labels.tif")
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, img)
    labels, points = w.session.labels_layer, w.session.points_layer
    layer.scale = SCALE
    layer.translate = (0.0, 5.0, -2.0)
    for lay in (labels, points):  # both were aligned and the prompt layer is empty
        np.testing.assert_allclose(lay.scale, SCALE)
        np.testing.assert_allclose(lay.translate, (0.0, 5.0, -2.0))
    assert "follow the new geometry" in w.status.text()
    t = 5
    lid = int(np.bincount(gt[t][gt[t] > 0]).argmax())
    rr, cc = np.nonzero(gt[t] == lid)
    k = int(np.argmin((rr - rr.mean()) ** 2 + (cc - cc.mean()) ** 2))
    world = np.asarray(layer.data_to_world((t, rr[k], cc[k])), float)
    viewer.dims.set_point(0, world[0])
    click(points, world)
    segment_and_wait(qtbot, w)
    w.commit()
    idx = tuple(np.round(labels.world_to_data(world)).astype(int))
    assert idx == (t, rr[k], cc[k])
    assert labels.data[idx] == 1
    assert set(np.flatnonzero(labels.data.any(axis=(1, 2)))) == {t}


def test_prompts_in_place_and_foreign_layers_stay(make_napari_viewer, shared_data):
    img = tifffile.imread(shared_data / "bacteria_phase_tyx_uint8.tif")[:3]
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, img)
    points = w.session.points_layer
    points.add((1, 40, 40))  # a click already placed: its world position must not move
    mine = viewer.add_labels(np.zeros(img.shape, np.uint16), scale=(2, 2, 2), name="mine")
    layer.scale = SCALE
    np.testing.assert_allclose(points.scale, (1, 1, 1))
    np.testing.assert_allclose(w.session.labels_layer.scale, SCALE)
    np.testing.assert_allclose(mine.scale, (2, 2, 2))
    w.close_widget()  # the panel lets go of the image's events
    layer.scale = (1, 1, 1)
    np.testing.assert_allclose(w.session.labels_layer.scale, SCALE)
