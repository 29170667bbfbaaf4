"""Make docs/images/medical.png: a real CT opened with the napari-sam2 DICOM reader, the
window panel set to a CT preset (brain W80/L40), a few structures segmented with the widget
and measured (volumes in mL).

Run with `xvfb-run -a .venv/bin/python scripts/screenshot_medical.py [file-or-folder]`
(default: the enhanced CT test file). The backend is whatever `auto` finds (SAM 2 with a
checkpoint, else the weight-free classical fallback, which the status line names).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_sam2.engine import Segmenter
from napari_sam2.widget import SAM2Widget

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "medical.png"
DEFAULT = ROOT / "tests" / "data" / "medical" / "eCT_Supplemental.dcm"
CLICKS = ((255, 268), (255, 305), (300, 395))  # (row, col): both lateral ventricles, cortex


def wait(widget):
    app = QApplication.instance()
    while widget.busy:
        app.processEvents()


def main(argv) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT
    os.environ["NAPARI_SAM2_SETTINGS"] = str(Path(tempfile.mkdtemp()) / "settings.ini")
    viewer = napari.Viewer(title="napari-sam2: medical")
    viewer.window.resize(1400, 900)
    (image,) = viewer.open(source, plugin="napari-sam2")
    w = SAM2Widget(viewer, segmenter=Segmenter(backend="auto"), autoload=False)
    viewer.window.add_dock_widget(w, name="SAM 2 segmentation", area="right")
    w.sections.section("WindowPanel").panel.apply_preset("brain")
    w.new_labels()
    w.new_points()
    z = image.data.shape[0] - 1 if image.ndim == 3 else None
    if z is not None:
        viewer.dims.set_current_step(0, z)
    for rc in CLICKS:
        data_point = (z, *rc) if z is not None else rc
        w.session.points_layer.add(
            w.session.points_layer.world_to_data(image.data_to_world(data_point))
        )
        w.segment()
        wait(w)
        w.commit()
        w.next_object()
    measure = w.sections.section("MeasurePanel")  # open by default for medical images
    measure.panel.measure()
    app = QApplication.instance()
    while measure.panel.busy:
        app.processEvents()
    viewer.reset_view()
    for _ in range(20):  # lay the dock out, then bring the table into view
        app.processEvents()
    w.sections_area.ensureWidgetVisible(measure.panel.table, 0, 0)
    app.processEvents()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    print("written:", OUT, "| status:", w.status.text())
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
