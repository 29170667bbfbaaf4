"""Closing, re-opening and first use of the dock widget (run under xvfb-run)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import threading

import napari
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends import ClassicalBackend
from widget_helpers import TIMEOUT, click, discs, make_widget, segment_and_wait

LEFT_DISC = (40, 40)


def _press(viewer, layer, key, qtbot, modifier=Qt.KeyboardModifier.NoModifier):
    """A key press on the canvas with ``layer`` active, dispatched by napari's keymap."""
    viewer.layers.selection.active = layer
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, key, modifier)
    qtbot.wait(20)


def _state(layer):
    """What a layer has bound: its own keymap, mouse callbacks and event callbacks."""
    events = [layer.events.data] + ([layer.events.paint] if hasattr(layer.events, "paint") else [])
    return (
        {str(k): f for k, f in layer.keymap.items()},
        list(layer.mouse_drag_callbacks),
        [len(e.callbacks) for e in events],
    )


def _viewer_callbacks(viewer):
    return [
        len(e.callbacks)
        for e in (
            viewer.layers.events.inserted,
            viewer.layers.events.removed,
            viewer.layers.selection.events.active,
            viewer.dims.events.current_step,
        )
    ]


def _user_layers(viewer, image):
    """A prompt and a labels layer the user made before docking (same geometry), with a
    key of their own bound on the labels layer."""
    pts = viewer.add_points(np.empty((0, 2)), ndim=2, name="my points")
    lab = viewer.add_labels(np.zeros(image.data.shape, np.uint16), name="my labels")

    def user_s(layer):
        layer.metadata["user_s"] = True

    lab.bind_key("s", user_s)
    return pts, lab, user_s


@pytest.mark.parametrize("how", ["close_button", "remove_dock_widget"])
def test_closing_unbinds_everything_and_reopening_works(make_napari_viewer, qtbot, how):
    viewer = make_napari_viewer()
    image = viewer.add_image(discs())
    pts, lab, user_s = _user_layers(viewer, image)
    before = {"pts": _state(pts), "lab": _state(lab), "viewer": _viewer_callbacks(viewer)}

    w = make_widget(viewer)
    assert w.session.points_layer is pts and w.session.labels_layer is lab  # no duplicates
    assert len(viewer.layers) == 3
    assert {"S", "C", "N", "T"} <= set(_state(pts)[0])
    assert _state(lab)[0]["S"] is not user_s and "Ctrl+Z" in _state(lab)[0]
    assert len(pts.mouse_drag_callbacks) == len(before["pts"][1]) + 2
    click(pts, (40, 30))
    segment_and_wait(qtbot, w)  # a preview layer exists now
    preview = w.preview.layer
    assert preview in viewer.layers

    dock = w.parent()
    if how == "close_button":
        dock.destroyOnClose()  # what napari's title-bar close button calls
    else:
        viewer.window.remove_dock_widget(w)
    qtbot.wait(50)
    assert _state(pts) == before["pts"]
    assert _state(lab) == before["lab"]  # the user's own S is back
    assert _state(lab)[0]["S"] is user_s
    assert _viewer_callbacks(viewer) == before["viewer"]
    assert preview not in viewer.layers

    # S on the prompt layer after closing: nothing of ours runs, nothing raises
    _press(viewer, pts, Qt.Key.Key_S, qtbot)
    assert not w.busy and w.session.result is None
    _press(viewer, lab, Qt.Key.Key_S, qtbot)
    assert lab.metadata.get("user_s") is True

    # reopen (napari makes a new widget): the same layers, keys work again
    w2 = make_widget(viewer)
    assert w2.session.points_layer is pts and w2.session.labels_layer is lab
    assert len(viewer.layers) == 3
    _press(viewer, pts, Qt.Key.Key_S, qtbot)
    qtbot.waitUntil(lambda: not w2.busy and w2.session.result is not None, timeout=TIMEOUT)
    _press(viewer, pts, Qt.Key.Key_C, qtbot)
    assert lab.data[40, 30] == 1


def test_hide_keeps_working_and_redocking_the_same_widget_rebinds(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(discs())
    w = make_widget(viewer)
    pts = w.session.points_layer
    dock = w.parent()
    dock.close()  # the title bar's hide button: the dock is only hidden
    qtbot.wait(20)
    assert "S" in _state(pts)[0]
    click(pts, (40, 30))
    _press(viewer, pts, Qt.Key.Key_S, qtbot)
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)
    dock.show()

    viewer.window.remove_dock_widget(w)
    assert _state(pts)[0] == {} and len(pts.mouse_drag_callbacks) == 1  # napari's "add"
    viewer.window.add_dock_widget(w)  # the same instance docked again
    assert {"S", "C", "N", "T"} <= set(_state(pts)[0])
    assert w.session.points_layer is pts
    qtbot.wait(50)  # the old dock is deleted meanwhile: the widget stays open
    segment_and_wait(qtbot, w)
    w.commit()
    assert w.session.labels_layer.data[40, 30] == 1


def test_removing_a_bound_layer_unbinds_it(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(discs())
    w = make_widget(viewer)
    pts, lab = w.session.points_layer, w.session.labels_layer
    n_data = len(pts.events.data.callbacks)
    viewer.layers.remove(pts)
    assert _state(pts)[0] == {} and len(pts.mouse_drag_callbacks) == 1
    assert len(pts.events.data.callbacks) < n_data
    assert w.session.points_layer is None
    warnings = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_warning", warnings.append)
    _press(viewer, lab, Qt.Key.Key_S, qtbot)  # still bound on the labels layer: a message
    assert warnings and "prompt" in warnings[-1].lower()
    viewer.layers.remove(lab)
    assert _state(lab)[0] == {}
    n_paint = len(lab.events.paint.callbacks)
    lab.events.paint(value=[])  # nothing of ours listens any more
    assert len(lab.events.paint.callbacks) == n_paint


def test_viewer_close_releases_layers_and_panels(make_napari_viewer, qtbot, monkeypatch):
    from qtpy.QtWidgets import QWidget

    closed = []

    class ExtraPanel(QWidget):
        def __init__(self, dock):
            super().__init__()
            self.dock = dock

        def close_panel(self):
            closed.append(self.dock)

    monkeypatch.setattr("napari_sam2.widget._dock.panel_classes", lambda: (ExtraPanel,))
    viewer = make_napari_viewer()
    viewer.add_image(discs())
    w = make_widget(viewer)
    assert len(w.panels) == 1
    pts = w.session.points_layer
    viewer.window.remove_dock_widget(w)
    assert closed == [w]
    w2 = make_widget(viewer)
    viewer.close()
    qtbot.wait(50)
    assert closed == [w, w2]
    assert _state(pts)[0] == {} and len(pts.mouse_drag_callbacks) == 1


# ------------------------------------------------------------------------- first use
def test_first_use_makes_matching_layers_and_says_what_to_do(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.stack([discs()] * 3), scale=(2.0, 0.5, 0.5), translate=(1, 2, 3))
    w = make_widget(viewer)
    pts, lab = w.session.points_layer, w.session.labels_layer
    assert isinstance(pts, napari.layers.Points) and isinstance(lab, napari.layers.Labels)
    assert lab.data.shape == image.data.shape and lab.data.dtype == np.uint16
    for layer in (pts, lab):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
    assert viewer.layers.selection.active is pts and pts.mode == "add"
    assert "press S" in w.status.text()
    assert [type(x).__name__ for x in viewer.layers] == ["Image", "Points", "Labels"]


def test_first_use_leaves_other_geometry_alone_and_follows_the_image(make_napari_viewer):
    viewer = make_napari_viewer()
    small = viewer.add_image(discs(), name="small")
    theirs_pts = viewer.add_points([[1, 1]], scale=(3, 3), name="their points")
    theirs_lab = viewer.add_labels(np.ones((10, 10), np.int32), name="their labels")
    w = make_widget(viewer)
    assert w.session.points_layer is not theirs_pts
    assert w.session.labels_layer is not theirs_lab
    np.testing.assert_array_equal(theirs_lab.data, 1)  # untouched
    assert len(theirs_pts.data) == 1 and "S" not in _state(theirs_pts)[0]
    n = len(viewer.layers)
    assert n == 5
    prompts, labels = w.session.points_layer, w.session.labels_layer
    big = viewer.add_image(np.zeros((100, 140), np.uint16), name="big")  # picker follows
    assert w.image_combo.value() is big
    assert w.session.labels_layer.data.shape == (100, 140)
    assert w.session.points_layer is prompts  # same frame (scale 1, no shift): reused
    assert len(viewer.layers) == n + 2  # the image and its labels
    viewer.layers.selection.active = small  # back: its layers are reused, none made
    assert w.session.labels_layer is labels
    assert len(viewer.layers) == n + 2


def test_docked_before_any_image_makes_the_layers_when_one_opens(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = make_widget(viewer)  # Plugins > SAM 2 segmentation on an empty viewer
    assert w.session.image_layer is None and len(viewer.layers) == 0
    image = viewer.add_image(discs(), scale=(0.5, 0.5))
    assert w.session.image_layer is image
    pts, lab = w.session.points_layer, w.session.labels_layer
    assert lab is not None and lab.data.shape == image.data.shape
    np.testing.assert_allclose(pts.scale, (0.5, 0.5))
    qtbot.waitUntil(lambda: viewer.layers.selection.active is pts, timeout=5000)
    assert pts.mode == "add" and w.image_combo.value() is image
    click(pts, image.data_to_world(LEFT_DISC))
    segment_and_wait(qtbot, w)
    w.commit()
    assert lab.data[LEFT_DISC] == 1


def test_demo_shows_prompt_layers(no_checkpoints, monkeypatch, tmp_path):
    from napari_sam2 import cli

    seen = {}

    def screenshot(self, path, **kw):
        seen["layers"] = [type(x).__name__ for x in self.layers]
        seen["active"] = type(self.layers.selection.active).__name__
        seen["mode"] = getattr(self.layers.selection.active, "mode", None)

    monkeypatch.setattr(napari.Viewer, "screenshot", screenshot)
    assert cli.main(["demo", "--screenshot", str(tmp_path / "x.png"), "--wait", "1"]) == 0
    assert seen["layers"][:3] == ["Image", "Points", "Labels"]
    assert seen["active"] == "Points" and seen["mode"] == "add"


# --------------------------------------------------------------------------- busy bar
class _Gated(ClassicalBackend):
    """Classical, but an encode stays in progress until ``gate`` is set."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def encode(self, image, cancel=None):
        assert self.gate.wait(30), "the test never opened the gate"
        return super().encode(image)


def test_single_segment_shows_busy_bar_not_a_zero_counter(make_napari_viewer, qtbot, capfd):
    from napari.utils import progress

    viewer = make_napari_viewer()
    viewer.add_image(discs())
    backend = _Gated()
    w = make_widget(viewer, Segmenter(predictor=backend))
    assert w.busy_bar.isHidden()
    click(w.session.points_layer, (40, 30))
    w.segment()
    qtbot.wait(100)  # events flow while the encode is held: the bar stays
    assert w.busy
    assert not w.busy_bar.isHidden()
    assert (w.busy_bar.minimum(), w.busy_bar.maximum()) == (0, 0)  # indeterminate
    assert not any("SAM 2" in str(p) for p in progress._all_instances)
    backend.gate.set()
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)
    assert w.busy_bar.isHidden()
    assert "0it" not in capfd.readouterr().err


# ----------------------------------------------------------------------------- triton
def test_importing_the_widget_leaves_triton_alone():
    code = "import sys, napari_sam2.widget; print('triton' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False"


def test_triton_blocked_only_with_mesa_llvm(tmp_path, monkeypatch):
    from napari_sam2.engine.runtime import llvm_guard as rt

    mesa = tmp_path / "maps_mesa"
    mesa.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n")
    nvidia = tmp_path / "maps_nvidia"
    nvidia.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libGLX_nvidia.so.0\n")
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.delenv(rt.OPT_OUT, raising=False)
    assert rt.avoid_llvm_clash(str(nvidia)) is False
    assert "triton" not in sys.modules
    assert rt.avoid_llvm_clash(str(tmp_path / "no_such_file")) is False
    monkeypatch.setenv(rt.OPT_OUT, "1")
    assert rt.avoid_llvm_clash(str(mesa)) is False
    assert "triton" not in sys.modules
    monkeypatch.setenv(rt.OPT_OUT, "0")
    assert rt.avoid_llvm_clash(str(mesa)) is True
    assert sys.modules["triton"] is None
    assert rt.avoid_llvm_clash(str(mesa)) is True  # once is enough


def test_a_loaded_triton_is_left_alone(tmp_path, monkeypatch):
    from napari_sam2.engine.runtime import llvm_guard as rt

    mesa = tmp_path / "maps"
    mesa.write_text("x /usr/lib/libLLVM-15.so.1\n")
    fake = type(sys)("triton")
    monkeypatch.setitem(sys.modules, "triton", fake)
    monkeypatch.delenv(rt.OPT_OUT, raising=False)
    assert rt.avoid_llvm_clash(str(mesa)) is False
    assert sys.modules["triton"] is fake


def test_model_loading_guards_against_the_llvm_clash(monkeypatch):
    """Scripted use in napari's console builds a model without any dock widget: the
    guard must run before sam2 (torchvision → triton) is imported, not only in the dock."""
    from napari_sam2.engine.model import hf as hf_models
    from napari_sam2.engine.model.load import load_model_config
    from napari_sam2.engine.model.registry import get_spec
    from napari_sam2.engine.runtime import llvm_guard as rt

    calls = []
    monkeypatch.setattr(rt, "avoid_llvm_clash", lambda *a, **k: calls.append(1) or False)
    cfg = load_model_config(get_spec("tiny"))
    assert cfg.model.image_size == 1024 and len(calls) == 1
    with contextlib.suppress(Exception):  # the guard runs before the import is tried
        hf_models.import_transformers()
    assert len(calls) == 2


def test_console_use_loads_sam2_after_a_viewer_without_crashing():
    """napari's console: a viewer exists (Mesa's LLVM GL under xvfb), no dock widget, and
    the scripted API builds SAM 2. Without the guard in model loading this segfaulted."""
    code = textwrap.dedent(
        """
        import napari, numpy as np
        viewer = napari.Viewer(show=False)
        from napari_sam2.engine import Segmenter
        seg = Segmenter("tiny", backend="sam2", random_weights=True, image_size=256)
        seg.set_image(np.random.default_rng(0).random((64, 64), dtype=np.float32))
        labels = np.zeros((64, 64), np.int32)
        seg.segment_into(labels, points=[(32, 32)])
        print("encoded", seg.stats.encodes)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.strip().endswith("encoded 1")
