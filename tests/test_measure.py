"""Per-object measurements: volume in mL / µm³, area per plane, bounding-box extent."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from napari_sam2.engine.errors import LabelsError
from napari_sam2.engine.measure import measure_labels


def _two_boxes():
    lab = np.zeros((20, 30, 40), np.uint16)
    lab[2:12, 5:15, 10:30] = 1  # 10 x 10 x 20 voxels = 2000
    lab[15:17, 20:24, 0:5] = 4  # 2 x 4 x 5 = 40 (IDs need not be consecutive)
    return lab


def test_anisotropic_mm_volumes_are_exact_in_ml():
    # voxel 2 x 1 x 0.5 mm = 1 mm³: 2000 voxels = 2000 mm³ = 2 mL
    m = measure_labels(_two_boxes(), spacing=(2.0, 1.0, 0.5), units="mm")
    assert m.columns == (
        "label",
        "voxels",
        "volume_mL",
        "planes",
        "max_area_mm2",
        "extent_z_mm",
        "extent_y_mm",
        "extent_x_mm",
    )
    one, four = m.as_dicts()
    assert one == {
        "label": 1,
        "voxels": 2000,
        "volume_mL": 2.0,
        "planes": 10,
        "max_area_mm2": 100.0,  # 10 x 20 pixels of 1 x 0.5 mm
        "extent_z_mm": 20.0,
        "extent_y_mm": 10.0,
        "extent_x_mm": 10.0,
    }
    assert four["label"] == 4 and four["voxels"] == 40
    assert four["volume_mL"] == 0.04
    assert (four["extent_z_mm"], four["extent_y_mm"], four["extent_x_mm"]) == (4.0, 4.0, 2.5)


def test_a_cube_of_1000_mm3_is_one_ml_with_uneven_spacing():
    lab = np.zeros((8, 40, 50), np.int32)
    lab[0:4, 0:20, 0:25] = 7  # 2000 voxels of 2.5 x 0.5 x 0.16 mm = 0.2 mm³ -> 400 mm³
    lab[4:8, 20:40, 25:50] = 9
    m = measure_labels(lab, spacing=(2.5, 0.5, 0.16), units=("millimeter",) * 3)
    assert m.column("volume_mL") == pytest.approx([0.4, 0.4], rel=1e-12)
    lab[0:8, 0:40, 0:50] = 3  # 16000 voxels x 0.2 mm³ = 3200 mm³ = 3.2 mL
    assert measure_labels(lab, spacing=(2.5, 0.5, 0.16), units="mm").column(
        "volume_mL"
    ) == pytest.approx([3.2], rel=1e-12)


def test_micrometre_units_give_um3_and_mixed_units_are_converted():
    lab = _two_boxes()
    m = measure_labels(lab, spacing=(2.0, 0.5, 0.5), units="micrometer")
    assert "volume_um3" in m.columns and m.unit == "um"
    assert m.column("volume_um3") == [2000 * 0.5, 40 * 0.5]
    assert m.column("extent_z_um") == [20.0, 4.0]
    # Z in µm, Y/X in nm: everything in the last axis's unit (nm)
    mixed = measure_labels(lab, spacing=(2.0, 500.0, 500.0), units=("um", "nm", "nm"))
    assert mixed.unit == "nm"
    assert mixed.column("extent_z_nm") == [20000.0, 4000.0]
    assert mixed.column("volume_nm3") == [2000 * 2000.0 * 500 * 500, 40 * 2000.0 * 500 * 500]


def test_without_units_sizes_are_in_pixels():
    m = measure_labels(_two_boxes())
    assert m.unit == "px" and m.column("volume_px3") == [2000.0, 40.0]
    assert m.column("extent_x_px") == [20.0, 5.0]


def test_area_per_plane_and_plane_rows():
    lab = np.zeros((5, 10, 10), np.uint8)
    lab[1, 2:4, 2:4] = 2  # 4 px
    lab[3, 0:10, 0:5] = 2  # 50 px; plane 2 empty in between
    m = measure_labels(lab, spacing=(1.0, 0.2, 0.5), units="mm")
    assert m.plane_columns == ("label", "plane", "pixels", "area_mm2")
    assert m.plane_rows == [(2, 1, 4, pytest.approx(0.4)), (2, 3, 50, pytest.approx(5.0))]
    (row,) = m.as_dicts()
    assert row["planes"] == 2 and row["max_area_mm2"] == pytest.approx(5.0)
    assert row["extent_z_mm"] == 3.0  # planes 1..3: the bounding box, gap included


def test_2d_labels_give_area():
    lab = np.zeros((10, 10), np.int64)
    lab[1:4, 1:6] = 5
    m = measure_labels(lab, spacing=(0.5, 0.25), units="mm")
    assert m.columns == ("label", "pixels", "area_mm2", "extent_y_mm", "extent_x_mm")
    assert m.rows == [(5, 15, 15 * 0.125, 1.5, 1.25)]
    assert m.plane_rows == []


def test_voxel_volume_overrides_the_product_of_steps():
    lab = _two_boxes()
    m = measure_labels(lab, spacing=(2.0, 1.0, 1.0), units="mm", voxel_volume=1.5)
    assert m.column("volume_mL") == [pytest.approx(3.0), pytest.approx(0.06)]


def test_time_axis_gives_one_row_per_time_point():
    lab = np.zeros((3, 10, 10), np.uint16)
    lab[0, 0:2, 0:2] = 1
    lab[2, 0:4, 0:2] = 1
    m = measure_labels(lab, spacing=(60.0, 0.5, 0.5), units=("s", "um", "um"), time_axis=0)
    assert m.columns[:3] == ("t", "label", "pixels")
    assert m.rows == [(0, 1, 4, 1.0, 1.0, 1.0), (2, 1, 8, 2.0, 2.0, 1.0)]


def test_csv_contents(tmp_path):
    m = measure_labels(_two_boxes(), spacing=(2.0, 1.0, 0.5), units="mm")
    path = m.to_csv(tmp_path / "objects.csv")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(m.columns)
    assert rows[1][:3] == ["1", "2000", "2.0"] and rows[2][:3] == ["4", "40", "0.04"]
    planes = m.planes_to_csv(tmp_path / "planes.csv").read_text(encoding="utf-8").splitlines()
    assert planes[0] == "label,plane,pixels,area_mm2"
    assert planes[1] == "1,2,200,100.0" and len(planes) == 1 + 10 + 2


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (np.zeros((4, 4), float), {}, "integers"),
        (np.zeros((4, 4, 4), int), {"spacing": (1, 1)}, "3 axes"),
        (np.zeros((4, 4, 4), int), {"spacing": (1, 0, 1)}, "positive"),
        (np.zeros((4,), int), {}, "2-D or 3-D"),
        (np.zeros((2, 4, 4, 4), int), {}, "2-D or 3-D"),
        (np.zeros((4, 4), int), {"voxel_volume": -1.0}, "voxel_volume"),
    ],
)
def test_bad_input_is_a_labels_error(labels, kwargs, message):
    with pytest.raises(LabelsError, match=message):
        measure_labels(labels, **kwargs)


def test_package_root_exports_it_without_torch():
    code = (
        "import sys, napari_sam2; f = napari_sam2.measure_labels; "
        "print(f.__module__, 'torch' in sys.modules, 'napari' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["napari_sam2.engine.measure", "False", "False"]
