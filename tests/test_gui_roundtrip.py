"""The user's round trip in a real viewer: open an OME-TIFF Z-stack with physical pixel
sizes through our reader, segment two objects with the widget, save the labels through
our writer, open them again: same pixels, lined up with the image, provenance visible."""

from __future__ import annotations

import napari
import numpy as np
import tifffile
from scipy import ndimage as ndi

from widget_helpers import click, make_widget, segment_and_wait

EM = "em_fibsem_medulla_zyx_uint8.ome.tif"
EM_GT = "em_fibsem_medulla_zyx_uint8_labels.tif"
TWO_CHANNEL = "ovule_nuclei_membrane_zcyx_uint16.ome.tif"  # see tests/data/README.md


def _innermost(mask):
    d = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.unravel_index(int(np.argmax(d)), mask.shape)


def _two_big_objects(gt_plane):
    ids, counts = np.unique(gt_plane[gt_plane > 0], return_counts=True)
    return [int(i) for i in ids[np.argsort(counts)[::-1][:2]]]


def test_open_segment_two_objects_save_reopen(make_napari_viewer, qtbot, shared_data, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open(str(shared_data / EM), plugin="napari-sam2")
    (image,) = layers
    assert isinstance(image, napari.layers.Image)
    np.testing.assert_allclose(image.scale, (0.01, 0.01, 0.01))
    assert tuple(image.axis_labels) == ("z", "y", "x")
    gt = tifffile.imread(shared_data / EM_GT)

    w = make_widget(viewer)
    assert w.image_combo.value() is image
    labels = w.session.labels_layer
    np.testing.assert_allclose(labels.scale, image.scale)
    z = 16
    viewer.dims.set_point(0, image.data_to_world((z, 0, 0))[0])
    clicked = []
    for obj in _two_big_objects(gt[z]):
        rc = _innermost(gt[z] == obj)
        clicked.append(rc)
        click(w.session.points_layer, image.data_to_world((z, *rc)))
        segment_and_wait(qtbot, w)
        w.commit()
        w.next_object()
    lab = labels.data
    assert [int(lab[z][rc]) for rc in clicked] == [1, 2]
    assert set(np.unique(lab)) == {0, 1, 2}
    assert not lab[np.arange(lab.shape[0]) != z].any()  # only the viewed plane

    assert sorted(labels.metadata["napari_sam2"]["objects"]) == [1, 2]
    out = tmp_path / "em_labels.tif"
    labels.save(str(out), plugin="napari-sam2")
    assert out.exists()
    (back,) = viewer.open(str(out), plugin="napari-sam2")
    assert isinstance(back, napari.layers.Labels)
    np.testing.assert_array_equal(np.asarray(back.data), lab)
    np.testing.assert_allclose(back.scale, image.scale)
    np.testing.assert_allclose(back.translate, image.translate)
    prov = back.metadata["napari_sam2"]
    assert prov["backend"] == "classical"
    assert sorted(prov["objects"]) == [1, 2]  # int label IDs, as in memory
    assert prov["objects"][1][0]["plane"] == [z]
    # lined up: the clicked world point is inside object 1 in the reopened layer too
    world = image.data_to_world((z, *clicked[0]))
    idx = tuple(np.round(back.world_to_data(world)).astype(int))
    assert back.data[idx] == 1


def test_anisotropic_two_channel_stack_keeps_scale(
    make_napari_viewer, qtbot, shared_data, tmp_path
):
    viewer = make_napari_viewer()
    layers = viewer.open(str(shared_data / TWO_CHANNEL), plugin="napari-sam2")
    assert len(layers) == 2  # one layer per channel
    chromatin = layers[0]
    np.testing.assert_allclose(chromatin.scale, (0.283718, 0.126786, 0.126786), rtol=1e-4)
    viewer.layers.selection.active = chromatin
    w = make_widget(viewer)
    assert w.channel_combo.isEnabled()  # the other channel layer can be combined
    labels = w.session.labels_layer
    assert labels.data.shape == chromatin.data.shape
    z = 2
    viewer.dims.set_point(0, chromatin.data_to_world((z, 0, 0))[0])
    plane = np.asarray(chromatin.data[z], float)
    rc = np.unravel_index(int(np.argmax(ndi.gaussian_filter(plane, 3))), plane.shape)
    click(w.session.points_layer, chromatin.data_to_world((z, *rc)))
    segment_and_wait(qtbot, w)
    w.commit()
    assert labels.data[z][rc] == 1
    out = tmp_path / "mitosis_labels.ome.tif"
    labels.save(str(out), plugin="napari-sam2")
    (back,) = viewer.open(str(out), plugin="napari-sam2")
    np.testing.assert_array_equal(np.asarray(back.data), labels.data)
    np.testing.assert_allclose(back.scale, chromatin.scale, rtol=1e-6)
    assert back.metadata["napari_sam2"]["image"]["layers"] == [chromatin.name]


def test_pyramid_file_segments_at_full_resolution(make_napari_viewer, qtbot, tmp_path):
    """A pyramidal OME-TIFF (SubIFD levels) opens as a multiscale layer; the labels are made,
    saved and reopened at full resolution, lined up with the image."""
    full = (2304, 2304)
    yy, xx = np.mgrid[: full[0], : full[1]]
    img = np.full(full, 100, np.uint16)
    center = (1500, 700)
    img[(yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= 60**2] = 3000
    path = tmp_path / "slide.ome.tif"
    meta = {"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
    opts = {"tile": (256, 256), "compression": "zlib"}
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, subifds=2, metadata=meta, **opts)
        for k in (2, 4):
            tw.write(img[::k, ::k], subfiletype=1, **opts)

    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-sam2")
    assert image.multiscale and len(image.data) == 3
    np.testing.assert_allclose(image.scale, (0.5, 0.5))
    w = make_widget(viewer)
    labels = w.session.labels_layer
    assert labels.data.shape == full
    click(w.session.points_layer, image.data_to_world(center))
    segment_and_wait(qtbot, w)
    w.commit()
    disc = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= 60**2
    obj = labels.data == 1
    assert (obj & disc).sum() / (obj | disc).sum() > 0.9
    out = tmp_path / "slide_labels.tif"
    labels.save(str(out), plugin="napari-sam2")
    (back,) = viewer.open(str(out), plugin="napari-sam2")
    assert back.data.shape == full
    np.testing.assert_allclose(back.scale, image.scale)
    np.testing.assert_array_equal(np.asarray(back.data), labels.data)
