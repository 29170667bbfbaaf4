"""Channels, multiscale layers and non-trivial transforms in the dock widget."""

from __future__ import annotations

import numpy as np
import pytest

from widget_helpers import (
    click,
    discs,
    make_widget,
    mouse_click,
    ready_widget,
    segment_and_wait,
)

LEFT, RIGHT = (40, 40), (40, 80)


def _two_channels():
    """ch0: a disc on the left only; ch1: a disc on the right only."""
    return discs(centers=(LEFT,)), discs(centers=(RIGHT,), value=200)


def _two_channel_widget(viewer, names, active):
    """The two channels as napari split-channel layers (own contrast limits), the layer
    ``active`` selected, and the widget docked; returns ``(layer0, layer1, widget)``."""
    layers = [
        viewer.add_image(data, name=name, contrast_limits=(0, hi))
        for data, name, hi in zip(_two_channels(), names, (3000, 200), strict=True)
    ]
    viewer.layers.selection.active = layers[active]
    return (*layers, make_widget(viewer))


def _disc_mask(center, shape=(80, 120), r=18):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= r**2


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _choose(w, choice):
    i = w.channel_combo.findData(choice)
    assert i >= 0, [w.channel_combo.itemData(k) for k in range(w.channel_combo.count())]
    w.channel_combo.setCurrentIndex(i)


def test_split_channel_layers_mean_max_of_visible(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a, b, w = _two_channel_widget(viewer, ("DAPI", "GFP"), active=0)
    assert w.image_combo.value() is a
    texts = [w.channel_combo.itemText(i) for i in range(w.channel_combo.count())]
    assert texts[0] == "This layer" and "Max of visible channels" in texts

    _choose(w, "max")
    click(w.session.points_layer, RIGHT)  # only GFP shows this disc
    segment_and_wait(qtbot, w)
    src = w.session.segmenter.source
    assert src.n_channels == 2 and src.channel == "max"
    assert src.normalization.high == (3000.0, 200.0)  # each layer's own contrast limits
    w.commit()
    lab = w.session.labels_layer.data
    assert lab.shape == a.data.shape
    assert _iou(lab == 1, _disc_mask(RIGHT)) > 0.9

    w.next_object()
    b.visible = False  # a hidden channel is left out: only DAPI remains
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    assert w.session.segmenter.source.n_channels == 1
    w.commit()
    assert _iou(w.session.labels_layer.data == 2, _disc_mask(LEFT)) > 0.9
    meta = w.session.labels_layer.metadata["napari_sam2"]
    assert meta["image"]["layers"] == ["DAPI"]


def test_channel_axis_follows_viewed_channel(make_napari_viewer, qtbot):
    ch0, ch1 = _two_channels()
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.stack([ch0, ch1 * 15]), axis_labels=("c", "y", "x"), contrast_limits=(0, 3000)
    )
    w = make_widget(viewer)
    assert w.channel_combo.isEnabled()
    assert w.channel_combo.findData(1) >= 0  # "Channel 1"
    assert w.session.labels_layer.data.shape == ch0.shape  # no channel axis in labels
    assert w.session.points_layer.ndim == 2
    viewer.dims.set_point(0, layer.data_to_world((1, 0, 0))[0])  # view channel 1
    click(w.session.points_layer, RIGHT)
    segment_and_wait(qtbot, w)
    src = w.session.segmenter.source
    assert src.channel_axis == 0 and src.channel == 1 and src.index_shape == ()
    w.commit()
    assert _iou(w.session.labels_layer.data == 1, _disc_mask(RIGHT)) > 0.9

    w.next_object()
    _choose(w, 0)  # a fixed channel, whatever is viewed
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    assert w.session.segmenter.source.channel == 0
    w.commit()
    assert _iou(w.session.labels_layer.data == 2, _disc_mask(LEFT)) > 0.9


def test_channel_axis_in_the_middle_is_refused(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 2, 40, 50), np.uint16), axis_labels=("z", "c", "y", "x"))
    w = make_widget(viewer)
    warnings = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_warning", warnings.append)
    n = len(viewer.layers)
    w.new_labels()
    assert len(viewer.layers) == n
    assert warnings and "channel axis" in warnings[0] and "Split Stack" in warnings[0]
    # the user's own layers cannot line up either: segmenting is refused, nothing written
    labels = viewer.add_labels(np.zeros((3, 40, 50), np.uint16))
    pts = viewer.add_points([[1, 20, 25]])
    w.labels_combo.set_value(labels)
    w.points_combo.set_value(pts)
    w.segment()
    assert len(warnings) == 2 and "channel axis" in warnings[1]
    assert not w.busy and not labels.data.any()


def test_multiscale_layer_segments_full_resolution(make_napari_viewer, qtbot):
    img = discs(centers=(LEFT, RIGHT))
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, [img, img[::2, ::2]], multiscale=True, scale=(0.5, 0.5))
    assert w.session.labels_layer.data.shape == img.shape
    click(w.session.points_layer, layer.data_to_world(LEFT))
    segment_and_wait(qtbot, w)
    assert w.session.segmenter.source.plane_shape == img.shape
    w.commit()
    assert _iou(w.session.labels_layer.data == 1, _disc_mask(LEFT)) > 0.9


@pytest.mark.parametrize(
    "transform",
    [
        {"rotate": 30.0, "scale": (0.5, 0.7), "translate": (5.0, -3.0)},
        {"shear": (0.4,), "scale": (2.0, 1.0)},
        {"affine": np.array([[0.8, -0.3, 4.0], [0.2, 1.1, -2.0], [0.0, 0.0, 1.0]])},
    ],
    ids=["rotate", "shear", "affine"],
)
def test_rotated_sheared_affine_images(make_napari_viewer, qtbot, transform):
    img = discs(centers=(LEFT, RIGHT))
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, img, **transform)
    # the user clicks where napari shows the right disc's centre
    world = layer.data_to_world(RIGHT)
    click(w.session.points_layer, world)
    req = w.session.prepare()
    np.testing.assert_allclose(req.prompts.objects[0].points.coords, [RIGHT], atol=1e-6)
    # a prompt layer with its own, different transform hits the same pixel
    other = viewer.add_points(np.empty((0, 2)), scale=(1.5, 1.5))
    other.add(other.world_to_data(world))
    w.points_combo.set_value(other)
    req = w.session.prepare()
    np.testing.assert_allclose(req.prompts.objects[0].points.coords, [RIGHT], atol=1e-6)
    segment_and_wait(qtbot, w)
    w.commit()
    lab = w.session.labels_layer
    assert _iou(lab.data == 1, _disc_mask(RIGHT)) > 0.9
    # the labels layer lines up: the same world point is inside label 1
    assert lab.data[tuple(np.round(lab.world_to_data(world)).astype(int))] == 1


def test_ctrl_click_picks_label_for_refinement(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, discs(centers=(LEFT, RIGHT)), scale=(2.0, 2.0))
    labels = w.session.labels_layer
    labels.data[30:50, 30:50] = 4  # a rough existing object on the left disc
    pts = w.session.points_layer
    pts.mode = "add"
    mouse_click(pts, layer.data_to_world((40, 40)), ["Control"])
    qtbot.waitUntil(lambda: w.refine_check.isChecked(), timeout=5000)
    assert labels.selected_label == 4
    assert len(pts.data) == 0  # the Ctrl-click added no prompt
    mouse_click(pts, layer.data_to_world((40, 40)))  # a plain click adds a prompt
    assert len(pts.data) == 1
    segment_and_wait(qtbot, w)
    w.commit()
    obj = labels.data == 4  # refined under the same ID: grown from the square to the disc
    assert obj.sum() > 1.5 * 20 * 20 and not (obj & ~_disc_mask(LEFT)).any()
    assert labels.data.max() == 4
    w.next_object()
    assert not w.refine_check.isChecked()  # the next object is a new one

    # Ctrl-click on the background: nothing picked
    mouse_click(pts, layer.data_to_world((5, 110)), ["Control"])
    qtbot.wait(50)
    assert not w.refine_check.isChecked() and len(pts.data) == 0


def test_rgb_image_is_one_layer_without_channel_choice(make_napari_viewer, qtbot):
    gray = (discs(centers=(LEFT, RIGHT)) > 0).astype(np.uint8) * 200
    rgb = np.stack([gray, gray // 2, np.zeros_like(gray)], axis=-1)
    viewer = make_napari_viewer()
    layer = viewer.add_image(rgb, rgb=True)
    w = make_widget(viewer)
    assert not w.channel_combo.isEnabled()
    assert w.session.labels_layer.data.shape == gray.shape
    click(w.session.points_layer, layer.data_to_world(RIGHT))
    segment_and_wait(qtbot, w)
    assert w.session.segmenter.source.rgb
    w.commit()
    assert _iou(w.session.labels_layer.data == 1, _disc_mask(RIGHT)) > 0.9


def test_selecting_another_channel_keeps_the_combined_image(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a, b, w = _two_channel_widget(viewer, ("A", "B"), active=1)
    assert w.image_combo.value() is b
    _choose(w, "composite")
    click(w.session.points_layer, RIGHT)
    segment_and_wait(qtbot, w)
    first = w.session.result.request.source
    assert [lay.name for lay in first.layers] == ["A", "B"]  # layer-list order
    viewer.layers.selection.active = a  # e.g. to change A's contrast limits
    assert w.image_combo.value() is b and w.session.result is not None
    w.image_combo.set_value(a)  # choosing A explicitly: same stack, same order
    assert [lay.name for lay in w.session.prepare().source.layers] == ["A", "B"]


def test_rolled_axes_segment_the_displayed_plane(make_napari_viewer, qtbot):
    """Ctrl-E / dims order: the plane across the stack is segmented (adapter.orientation)."""
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, np.stack([discs()] * 4))
    w.session.points_layer.add([2, 40, 40])
    viewer.dims.order = (2, 0, 1)  # a Z-Y view across the stack, at X = 40
    viewer.dims.set_point(2, 40)
    segment_and_wait(qtbot, w)
    req = w.session.result.request
    assert req.plane == (40,) and req.orientation.plane_axes == (0, 1)
    viewer.dims.order = (0, 1, 2)
    viewer.dims.set_point(0, 2)
    segment_and_wait(qtbot, w)
    assert w.session.result.request.plane == (2,)
