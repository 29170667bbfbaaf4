"""Make the docs' screenshots from a real viewer: run with `xvfb-run -a .venv/bin/python scripts/screenshots.py`.

Shows the widget's first use on the shipped 2-D nuclei sample (first_use.png), annotates it
(widget.png), runs Segment everything and measures the objects (panels.png), annotates the
3-D sample (widget_3d.png) and then its side view, Z x X with the axes rolled (any_plane.png) (the backend that `auto` finds: SAM 2 with a checkpoint, else the
classical fallback) and saves PNGs under docs/images/.  The dock's sections start in their
default open/closed state (a fresh settings file, not the user's).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_sam2.engine import Segmenter
from napari_sam2.io.samples import nuclei_2d, nuclei_3d
from napari_sam2.widget import SAM2Widget

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def wait(widget):
    app = QApplication.instance()
    while widget.busy:
        app.processEvents()


def settle(seconds: float = 1.0) -> None:
    """Let the window lay itself out (the canvas gets its final size)."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.instance().processEvents()
        time.sleep(0.02)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["NAPARI_SAM2_SETTINGS"] = str(Path(tempfile.mkdtemp()) / "settings.ini")
    viewer = napari.Viewer(title="napari-sam2")
    viewer.window.resize(1400, 900)
    data, kwargs, _ = nuclei_2d()[0]
    image = viewer.add_image(data, **kwargs)
    w = SAM2Widget(viewer, segmenter=Segmenter(backend="auto"), autoload=False)
    viewer.window.add_dock_widget(w, name="SAM 2 segmentation", area="right")
    # first use: the widget made the prompt and labels layers and says what to do next
    settle()
    viewer.reset_view()
    settle()
    viewer.screenshot(str(OUT / "first_use.png"), canvas_only=False)
    pts = w.session.points_layer
    w.new_shapes()
    viewer.layers.selection.active = pts
    # click on a few bright blobs, as a user would (brightest smoothed maxima)
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian

    peaks = peak_local_max(gaussian(np.asarray(data, float), 3), min_distance=40, num_peaks=8)
    for rc in peaks[:5]:
        pts.add(rc)
        w.segment()
        wait(w)
        w.commit()
        w.next_object()
    boxes = [[p - 14, p + 14] for p in peaks[5:7]]
    w.session.shapes_layer.add_rectangles(boxes)
    w.segment()
    wait(w)
    w.commit()
    w.next_object()
    pts.add(peaks[7])
    w.segment()
    wait(w)
    viewer.layers.selection.active = pts
    viewer.reset_view()
    QApplication.instance().processEvents()
    viewer.screenshot(str(OUT / "widget.png"), canvas_only=False)

    # the sections, after Segment everything on the same plane and Measure
    sections = w.sections
    sections.section("SavePanel").set_open(False)
    sections.section("EverythingPanel").set_open(True)
    everything = sections.section("EverythingPanel").panel
    everything.run()
    while everything.busy:
        QApplication.instance().processEvents()
    sections.section("EverythingPanel").set_open(False)
    sections.section("MeasurePanel").set_open(True)
    measure = sections.section("MeasurePanel").panel
    measure.measure()
    while measure.busy:
        QApplication.instance().processEvents()
    settle()
    viewer.screenshot(str(OUT / "panels.png"), canvas_only=False)
    sections.section("MeasurePanel").set_open(False)
    sections.section("SavePanel").set_open(True)

    viewer.layers.clear()
    data, kwargs, _ = nuclei_3d()[0]
    image = viewer.add_image(data, **kwargs)  # the widget makes its layers again
    w.image_combo.set_value(image)
    viewer.dims.set_current_step(0, data.shape[0] // 2)
    z = data.shape[0] // 2
    plane = gaussian(np.asarray(data[z], float), 3)
    border = max(3, min(plane.shape) // 10)  # blobs cut by the image edge make poor examples
    for r, c in peak_local_max(plane, min_distance=12, num_peaks=3, exclude_border=border):
        w.session.points_layer.add((z, r, c))
        w.segment()
        wait(w)
        w.commit()
        w.next_object()
    w.session.points_layer.add((z, *peak_local_max(plane, min_distance=12, num_peaks=4)[-1]))
    viewer.reset_view()
    QApplication.instance().processEvents()
    viewer.screenshot(str(OUT / "widget_3d.png"), canvas_only=False)

    # the same stack seen from the side (Z x X, axes rolled): segmented on that plane
    w.next_object()
    y = data.shape[1] // 2
    viewer.dims.order = (1, 0, 2)  # Y is the slider; Z and X are displayed
    viewer.dims.set_current_step(1, y)
    side = gaussian(np.asarray(data[:, y, :], float), 2)
    for zz, c in peak_local_max(side, min_distance=10, num_peaks=6, exclude_border=2):
        labels = w.session.labels_layer.data
        if labels[zz, y, c]:
            continue  # already inside an object written from this view
        w.session.points_layer.add((zz, y, c))
        w.segment()
        wait(w)
        w.commit()
        w.next_object()
    viewer.reset_view()
    settle()
    viewer.screenshot(str(OUT / "any_plane.png"), canvas_only=False)
    print("written:", *sorted(OUT.glob("*.png")))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
