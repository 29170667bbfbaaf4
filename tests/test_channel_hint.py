"""A (2, H, W) / (3, H, W) image without axis labels (``np.stack([dapi, gfp])``, a CYX TIFF
opened without channel_axis) is segmented as Z planes: the dock says how to open it as
channels, in its status line and a notification; real Z stacks get no such hint."""

from __future__ import annotations

import napari
import numpy as np
import pytest

from napari_sam2.adapter.channels import channels_as_planes_hint
from widget_helpers import discs, make_widget


def _layer(shape, **kw):
    return napari.layers.Image(np.zeros(shape, np.uint16), name="cells", **kw)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_hint_for_few_unlabelled_planes(n):
    hint = channels_as_planes_hint(_layer((n, 256, 300)))
    assert hint is not None
    assert hint.startswith(f"'cells' has {n} planes of 256×300: they are segmented as Z planes.")
    assert "Split Stack" in hint and "channel_axis=0" in hint and "Channels picker" in hint


def test_hint_for_a_zcyx_hyperstack_without_labels():
    """napari's builtin reader gives an ImageJ ZCYX file as an unlabelled (Z, C, Y, X)."""
    hint = channels_as_planes_hint(_layer((5, 2, 170, 240)))
    assert hint is not None
    assert hint.startswith("'cells' has an axis 1 of 2 planes (5×2×170×240)")
    assert "channel_axis=1" in hint and "('z', 'c', 'y', 'x')" in hint


@pytest.mark.parametrize(
    "layer",
    [
        _layer((40, 256, 256)),  # a real Z stack
        _layer((5, 256, 256)),
        _layer((3, 256, 256), axis_labels=("z", "y", "x")),  # labelled Z
        _layer((2, 256, 256), axis_labels=("t", "y", "x")),  # labelled time
        _layer((3, 256, 256), axis_labels=("c", "y", "x")),  # already a channel axis
        _layer((3, 256, 256), scale=(2.5, 0.2, 0.2)),  # its own Z spacing
        _layer((3, 40, 40)),  # tiny planes: as many planes as could be Z
        _layer((256, 256)),  # 2-D
        _layer((3, 40, 256, 256)),  # 4-D: 3 time points of a Z stack
        _layer((5, 2, 256, 256), axis_labels=("z", "t", "y", "x")),
        napari.layers.Image(np.zeros((3, 256, 256, 3), np.uint8), rgb=True),
    ],
    ids=[
        "z40",
        "z5",
        "label-z",
        "label-t",
        "label-c",
        "z-scale",
        "tiny",
        "2d",
        "4d-tz",
        "4d-labelled",
        "rgb",
    ],
)
def test_no_hint_for_stacks_and_channel_images(layer):
    assert channels_as_planes_hint(layer) is None
    assert channels_as_planes_hint(None) is None


def _notes(monkeypatch):
    from napari_sam2.widget import _notify

    seen = []
    monkeypatch.setattr(_notify, "show_info", seen.append)
    return seen


def test_dock_hints_at_channels_stacked_as_planes(make_napari_viewer, qtbot, monkeypatch):
    seen = _notes(monkeypatch)
    viewer = make_napari_viewer()
    dapi, gfp = discs(), discs(centers=((20, 30),))
    viewer.add_image(np.stack([dapi, gfp]), name="stacked")
    w = make_widget(viewer)
    status = w.status.text()
    assert status.startswith("'stacked' has 2 planes of 80×120: they are segmented as Z planes.")
    assert "classical" in status  # the model line is still there
    assert [m for m in seen if m.startswith("'stacked' has 2 planes")] == [status.split("\n")[0]]
    # segmentation is unchanged: still a Z stack with 3-D labels, and the hint goes away
    assert w.session.labels_layer.data.shape == (2, 80, 120)
    viewer.dims.set_current_step(0, 0)
    w.session.points_layer.add([0, 40, 40])
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=60_000)
    assert "segmented as Z planes" not in w.status.text()


def test_dock_gives_no_hint_for_a_z_stack(make_napari_viewer, qtbot, monkeypatch):
    seen = _notes(monkeypatch)
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([discs()] * 12), name="zstack")
    w = make_widget(viewer)
    assert "segmented as Z planes" not in w.status.text()
    assert not [m for m in seen if "segmented as Z planes" in m]
    # split into channel layers as the hint says: no hint either
    viewer.layers.clear()
    viewer.add_image(np.stack([discs(), discs()]), channel_axis=0, name=["dapi", "gfp"])
    w.image_combo.set_value(viewer.layers["gfp"])
    assert "segmented as Z planes" not in w.status.text()
    assert not [m for m in seen if "segmented as Z planes" in m]
