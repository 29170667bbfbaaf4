"""Ground truth opened beside the image is reused as the output: the widget says so.

Found as a new user: nuclei3d + its ``_labels.tif`` opened with the napari-sam2 reader
(same voxel size): the widget silently chose the ground truth as "Labels out", so the
first commit went into it as object 55.
"""

from __future__ import annotations

import numpy as np

from widget_helpers import make_widget


def test_ground_truth_chosen_as_output_is_flagged(make_napari_viewer, shared_data, monkeypatch):
    said = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_warning", said.append)
    viewer = make_napari_viewer()
    (image,) = viewer.open(shared_data / "nuclei3d_ovule_zyx_uint8.tif", plugin="napari-sam2")
    (gt,) = viewer.open(shared_data / "nuclei3d_ovule_zyx_uint8_labels.tif", plugin="napari-sam2")
    viewer.layers.selection.active = image
    w = make_widget(viewer)
    assert w.session.labels_layer is gt
    n = len(np.unique(gt.data)) - 1
    assert said == [
        f"Output labels: '{gt.name}' already holds {n} object(s) not made with SAM 2 "
        "segmentation; new objects will be added to it. To keep it unchanged (e.g. ground "
        "truth), press 'New' next to 'Labels out'."
    ]


def test_own_or_empty_labels_are_reused_quietly(make_napari_viewer, shared_data, monkeypatch):
    said = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_warning", said.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((4, 32, 32), np.uint8))
    empty = viewer.add_labels(np.zeros((4, 32, 32), np.uint16))
    viewer.layers.selection.active = image
    w = make_widget(viewer)
    assert w.session.labels_layer is empty and said == []
    ours = viewer.add_labels(np.ones((4, 32, 32), np.uint16), metadata={"napari_sam2": {}})
    w.close_widget()
    viewer.layers.selection.active = image
    w2 = make_widget(viewer)
    assert w2.session.labels_layer is ours and said == []
