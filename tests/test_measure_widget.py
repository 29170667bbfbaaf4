"""Measurements of a Labels layer in its physical units, and the dock's Measure panel."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_sam2.adapter.measure import layer_voxel_size, measure_layer
from widget_helpers import make_widget


def _labels():
    lab = np.zeros((10, 32, 32), np.uint16)
    lab[1:5, 2:12, 2:12] = 1  # 400 voxels
    lab[6:9, 20:30, 10:30] = 2  # 600 voxels
    lab[9, 0:2, 0:3] = 5  # 6 voxels
    return lab


def test_layer_scale_and_units_give_ml(make_napari_viewer):
    import napari

    layer = napari.layers.Labels(_labels(), scale=(2.5, 0.8, 0.5), units=("mm",) * 3)
    m = measure_layer(layer)
    assert m.unit == "mm"
    # 1 voxel = 2.5 x 0.8 x 0.5 = 1 mm³
    assert m.column("label") == [1, 2, 5]
    assert m.column("volume_mL") == pytest.approx([0.4, 0.6, 0.006], rel=1e-12)
    assert m.column("extent_z_mm") == pytest.approx([10.0, 7.5, 2.5])
    assert m.column("max_area_mm2") == pytest.approx([40.0, 80.0, 2.4])


def test_oblique_grid_uses_the_determinant(make_napari_viewer):
    import napari

    # sheared grid: the steps along the axes are longer than 1 but a voxel's volume is
    # |det| = 2 x 1 x 1 (a shear keeps volumes)
    layer = napari.layers.Labels(
        _labels(), scale=(2.0, 1.0, 1.0), shear=(0.5, 0.0, 0.0), units=("mm",) * 3
    )
    size = layer_voxel_size(layer)
    assert size["voxel_volume"] == pytest.approx(2.0)
    assert np.prod(size["spacing"]) > 2.01  # the product of the steps would over-count
    m = measure_layer(layer)
    assert m.column("volume_mL") == pytest.approx([0.8, 1.2, 0.012])
    plain = layer_voxel_size(napari.layers.Labels(_labels(), scale=(2.0, 1.0, 1.0)))
    assert plain["voxel_volume"] is None and plain["spacing"] == (2.0, 1.0, 1.0)


def test_time_axis_is_measured_per_time_point(make_napari_viewer):
    import napari

    lab = np.zeros((3, 16, 16), np.uint8)
    lab[:, 2:6, 2:6] = 1
    layer = napari.layers.Labels(
        lab, scale=(1.0, 0.5, 0.5), axis_labels=("t", "y", "x"), units=("s", "um", "um")
    )
    assert layer_voxel_size(layer)["time_axis"] == 0
    m = measure_layer(layer)
    assert m.columns[:4] == ("t", "label", "pixels", "area_um2")
    assert m.column("t") == [0, 1, 2] and m.column("area_um2") == [4.0, 4.0, 4.0]


def test_panel_shows_a_row_per_id_and_saves_csv(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(
        np.zeros((10, 32, 32), np.uint16),
        scale=(2.5, 0.8, 0.5),
        units=("mm",) * 3,
        axis_labels=("z", "y", "x"),
        name="scan",
    )
    w = make_widget(viewer)
    (panel,) = [p for p in w.panels if type(p).__name__ == "MeasurePanel"]
    labels = w.session.labels_layer
    assert labels is not None and tuple(labels.scale) == (2.5, 0.8, 0.5)
    labels.data = _labels()
    assert not panel.save_btn.isEnabled()
    assert panel.save_csv(str(tmp_path / "early.csv")) == []  # nothing measured yet
    with qtbot.waitSignal(panel.measured, timeout=30_000):
        panel.measure_btn.click()
    assert panel.save_btn.isEnabled() and panel.measure_btn.isEnabled()
    table = panel.table
    assert table.rowCount() == 3
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[:3] == ["label", "voxels", "volume_mL"]
    assert [table.item(r, 0).text() for r in range(3)] == ["1", "2", "5"]
    assert [table.item(r, 2).text() for r in range(3)] == ["0.4", "0.6", "0.006"]
    assert "mL" in panel.units_label.text() and "3 object(s)" in w.status.text()
    written = panel.save_csv(str(tmp_path / "lesions.csv"))
    assert [p.name for p in written] == ["lesions.csv", "lesions_planes.csv"]
    with written[0].open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["label"], r["voxels"]) for r in rows] == [("1", "400"), ("2", "600"), ("5", "6")]
    assert float(rows[1]["volume_mL"]) == pytest.approx(0.6)
    planes = written[1].read_text(encoding="utf-8").splitlines()
    assert planes[0] == "label,plane,pixels,area_mm2" and len(planes) == 1 + 4 + 3 + 1


def test_panel_without_labels_says_so(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint16))
    w = make_widget(viewer)
    (panel,) = [p for p in w.panels if type(p).__name__ == "MeasurePanel"]
    w.labels_combo.set_value(None)
    assert w.session.labels_layer is None
    assert panel.measure() is False
    assert w.status.text() == "No Labels layer chosen: nothing to measure."
    assert panel.table.rowCount() == 0 and not panel.busy


def test_four_spatial_axes_are_refused_before_any_work(make_napari_viewer):
    import napari

    from napari_sam2.adapter.measure import measure_job
    from napari_sam2.engine.errors import LabelsError

    layer = napari.layers.Labels(np.zeros((2, 2, 4, 4, 4), np.uint8))
    with pytest.raises(LabelsError, match="4 spatial axes"):
        measure_job(layer)
