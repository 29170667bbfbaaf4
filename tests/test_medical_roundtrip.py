"""The issue's "done when": open a NIfTI brain in napari, choose a window, click a structure,
segment, commit, save the labels as NIfTI, and they open aligned in plain nibabel."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage as ndi

from napari_sam2.io.medical import _orient
from napari_sam2.io.medical.windowing import ROBUST
from napari_sam2.widget._window_panel import WindowPanel
from widget_helpers import click, make_widget, segment_and_wait

BRAIN = "medical/anatomical.nii"


def test_nifti_brain_click_segment_save_aligned_in_nibabel(
    shared_data, tmp_path, make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    (image,) = viewer.open(shared_data / BRAIN, plugin="napari-sam2")
    w = make_widget(viewer)
    (panel,) = [p for p in w.panels if isinstance(p, WindowPanel)]
    limits = panel.apply_preset(ROBUST)
    w.new_labels()
    w.new_points()
    z = image.data.shape[0] // 2
    viewer.dims.set_current_step(0, z)
    smooth = ndi.gaussian_filter(image.data[z].astype(float), 2)
    rc = np.unravel_index(np.argmax(smooth), smooth.shape)
    click(w.session.points_layer, image.data_to_world((z, *rc)))
    segment_and_wait(qtbot, w)
    assert w.session.segmenter.source.normalization.low == (limits[0],)
    w.commit()
    labels = w.session.labels_layer
    (label_id,) = [int(i) for i in np.unique(labels.data) if i]
    display_voxels = np.argwhere(labels.data == label_id)
    assert set(display_voxels[:, 0]) == {z} and labels.data[(z, *rc)] == label_id

    (written,) = labels.save(str(tmp_path / "brain_seg.nii.gz"), plugin="napari-sam2")

    source = nib.load(shared_data / BRAIN)
    back = nib.load(written)
    assert np.array_equal(back.affine, source.affine)
    assert back.shape == source.shape
    saved = np.asanyarray(back.dataobj)
    assert np.issubdtype(saved.dtype, np.unsignedinteger)
    file_voxels = np.argwhere(saved == label_id)
    assert len(file_voxels) == len(display_voxels)
    # every saved voxel is, in scanner space, a voxel the user labelled in napari
    for vox in file_voxels:
        world = _orient.RAS_TO_WORLD @ apply_affine(back.affine, vox)
        disp = np.round(labels.world_to_data(world)).astype(int)
        assert labels.data[tuple(disp)] == label_id
    # and the provenance (prompt in display data coordinates) went along
    (ext,) = [e for e in back.header.extensions if e.get_code() == 6]
    record = json.loads(ext.get_content())
    assert str(label_id) in record["objects"]
