"""Helpers shared by the widget tests (driving SAM2Widget in a real viewer)."""

from __future__ import annotations

import numpy as np

from napari_sam2.engine import Segmenter
from napari_sam2.widget import SAM2Widget

TIMEOUT = 60_000


def make_widget(viewer, segmenter=None) -> SAM2Widget:
    """The dock widget on ``viewer`` with the classical backend unless told otherwise."""
    w = SAM2Widget(viewer, segmenter=segmenter or Segmenter(backend="classical"), autoload=False)
    viewer.window.add_dock_widget(w)
    return w


def segment_and_wait(qtbot, w) -> None:
    """Press Segment and wait for the worker's preview."""
    w.session.result = None
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)


def click(points_layer, world_rc, positive=True) -> None:
    """Add a point where the user clicked, in world coordinates."""
    data = points_layer.world_to_data(np.asarray(world_rc, float))
    points_layer.feature_defaults["positive"] = positive
    points_layer.add(data)
    points_layer.feature_defaults["positive"] = True


def discs(shape=(80, 120), centers=((40, 40), (40, 75)), r=18, value=3000) -> np.ndarray:
    """Bright discs on a dark background (uint16)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.uint16)
    for cy, cx in centers:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = value
    return img


class MouseEvent:
    """A minimal napari mouse event for ``mouse_press_callbacks``/``mouse_release_callbacks``."""

    def __init__(self, position, modifiers=()):
        self.modifiers = list(modifiers)
        self.type = "mouse_press"
        self.position = tuple(float(v) for v in position)
        self.pos = np.asarray(position[-2:], float)
        self.view_direction = None
        self.dims_displayed = [len(position) - 2, len(position) - 1]
        self.is_dragging = False
        self.button = 1
        self.handled = False


def mouse_click(layer, position, modifiers=()) -> None:
    """Press and release at a world ``position`` on ``layer`` (no movement)."""
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    ev = MouseEvent(position, modifiers)
    mouse_press_callbacks(layer, ev)
    ev.type = "mouse_release"
    mouse_release_callbacks(layer, ev)


def ready_widget(viewer, image, segmenter=None, **image_kwargs):
    """Add ``image`` and dock the widget on it, which makes its prompt and labels layers
    (first use); returns ``(image_layer, widget)``."""
    layer = viewer.add_image(image, **image_kwargs)
    w = make_widget(viewer, segmenter)
    pts, lab = w.session.points_layer, w.session.labels_layer
    assert pts is not None and lab is not None, "the widget made no prompt/labels layer"
    assert viewer.layers.selection.active is pts and pts.mode == "add"
    return layer, w
