"""The Save labels panel writes with napari-sam2's writers: voxel size, axes, provenance.

Found as a new user: *File > Save Selected Layers…* preselects napari's builtin writer,
whose TIFF has no voxel size; the ovule labels reopened with scale 1.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import tifffile

from napari_sam2.io import read_tiff
from napari_sam2.io.medical.nifti import read_nifti
from napari_sam2.widget._save_panel import SavePanel
from widget_helpers import make_widget, ready_widget

SCALE = (0.2837, 0.1268, 0.1268)


def _panel(w) -> SavePanel:
    [p] = [p for p in w.panels if isinstance(p, SavePanel)]
    return p


def test_saved_tiff_keeps_scale_axes_and_ids(make_napari_viewer, shared_data, tmp_path):
    img = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8.tif")
    gt = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8_labels.tif")
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, img, scale=SCALE, translate=(1.0, 2.0, 3.0), units="um")
    labels = w.session.labels_layer
    labels.data[60][gt[60] == 31] = 4
    out = _panel(w).save(str(tmp_path / "ovule_objects.tif"))
    assert out == str(tmp_path / "ovule_objects.tif")
    assert "saved to" in w.status.text()
    ((data, kwargs, kind),) = read_tiff(out)
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels.data)
    np.testing.assert_allclose(kwargs["scale"], SCALE)
    np.testing.assert_allclose(kwargs["translate"], (1.0, 2.0, 3.0))
    assert tuple(kwargs["axis_labels"]) == ("z", "y", "x")


def test_medical_labels_save_as_nifti_on_the_source_affine(
    make_napari_viewer, shared_data, tmp_path
):
    path = shared_data / "medical" / "anatomical.nii"
    viewer = make_napari_viewer()
    (image,) = viewer.open(path, plugin="napari-sam2")
    w = make_widget(viewer)
    panel = _panel(w)
    assert panel._filters()[0].startswith("NIfTI")
    w.session.labels_layer.data[12, 20:25, 10:15] = 2
    out = panel.save(str(tmp_path / "anat_objects.nii.gz"))
    np.testing.assert_allclose(nib.load(out).affine, nib.load(path).affine)
    ((back, _, kind),) = read_nifti(out)
    assert kind == "labels"
    np.testing.assert_array_equal(back, w.session.labels_layer.data)


def test_bad_name_and_no_layer_are_refused(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, np.zeros((20, 20), np.uint8))
    panel = _panel(w)
    assert panel.save(str(tmp_path / "labels.png")) is None
    assert "choose a .tif" in w.status.text()
    assert not list(tmp_path.iterdir())
    w.session.labels_layer = None
    assert panel.save(str(tmp_path / "x.tif")) is None
