"""Window presets and the widget's window panel: SAM sees exactly the chosen window."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_sam2.io.medical.windowing import (
    CT_PRESETS,
    ROBUST,
    file_windows,
    preset_limits,
    preset_names,
    robust_limits,
    window_limits,
)
from napari_sam2.widget._window_panel import WindowPanel
from widget_helpers import click, make_widget, segment_and_wait

CT_SMALL = "medical/CT_small.dcm"


def test_presets_are_the_radiology_windows():
    assert window_limits(*CT_PRESETS["soft tissue"]) == (-160.0, 240.0)
    assert window_limits(*CT_PRESETS["lung"]) == (-1350.0, 150.0)
    assert window_limits(*CT_PRESETS["bone"]) == (-500.0, 1300.0)
    assert window_limits(*CT_PRESETS["brain"]) == (0.0, 80.0)
    with pytest.raises(ValueError, match="positive width"):
        window_limits(0, 40)


def test_file_windows_and_names():
    metadata = {
        "medical": {
            "modality": "MR",
            "windows": [{"center": 600, "width": 1600, "explanation": "T1"}, {"center": 1}],
        }
    }
    assert file_windows(metadata) == [("file window: T1", (1600.0, 600.0))]
    names = preset_names(metadata)
    assert names[:2] == ["file window: T1", ROBUST]  # MR: its own window first
    assert preset_limits("file window: T1", metadata=metadata) == (-200.0, 1400.0)
    assert preset_names({"medical": {"modality": "CT"}})[:4] == list(CT_PRESETS)
    with pytest.raises(KeyError):
        preset_limits("nope", metadata=metadata)


def test_robust_limits_ignore_outliers():
    values = np.arange(10_000, dtype=np.float32)
    values[:3] = -1e9
    values[-3:] = np.inf
    low, high = robust_limits(values)
    assert 0 < low < 100 and 9_900 < high < 10_000


def test_lung_preset_through_panel_reaches_sam_input(shared_data, make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(shared_data / CT_SMALL, plugin="napari-sam2")
    ds = pydicom.dcmread(shared_data / CT_SMALL)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    w = make_widget(viewer)
    (panel,) = [p for p in w.panels if isinstance(p, WindowPanel)]
    items = [panel.preset_combo.itemText(i) for i in range(panel.preset_combo.count())]
    assert items[1:5] == list(CT_PRESETS) and ROBUST in items
    panel.preset_combo.activated.emit(items.index("lung"))
    assert tuple(layer.contrast_limits) == (-1350.0, 150.0)
    assert panel.window_label.text() == "W 1500 / L -600"
    w.new_points()
    click(w.session.points_layer, layer.data_to_world((64, 64)))
    segment_and_wait(qtbot, w)
    source = w.session.segmenter.source
    assert source.normalization.to_dict() == {
        "source": "contrast_limits",
        "low": [-1350.0],
        "high": [150.0],
    }
    expected = np.clip((hu - -1350.0) / 1500.0, 0, 1).astype(np.float32)
    np.testing.assert_allclose(source.sam_image()[..., 0], expected, atol=1e-6)
    # another preset: the next Segment sees the new window
    panel.apply_preset("bone")
    segment_and_wait(qtbot, w)
    assert w.session.segmenter.source.normalization.low == (-500.0,)


def test_panel_robust_on_plain_image_and_rgb(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    img = rng.integers(100, 200, (40, 50)).astype(np.uint16)
    img[0, 0] = 60000  # one outlier the robust window ignores
    layer = viewer.add_image(img)
    w = make_widget(viewer)
    (panel,) = [p for p in w.panels if isinstance(p, WindowPanel)]
    low, high = panel.apply_preset(ROBUST)
    assert 100 <= low < 105 and 195 < high <= 200
    assert tuple(layer.contrast_limits) == (low, high)
    viewer.add_image(np.zeros((10, 10, 3), np.uint8), rgb=True)
    w.image_combo.set_value(viewer.layers[-1])
    assert not panel.preset_combo.isEnabled()
    panel.close_panel()
