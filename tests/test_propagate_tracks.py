"""Time-lapse outputs: CTC export, per-object table, napari Tracks layer (real data)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_sam2.io.exports.tracks import (
    ctc_tracks,
    export_ctc,
    object_table,
    save_table_csv,
    tracks_array,
)


@pytest.fixture(scope="module")
def bacteria(shared_data):
    gt = tifffile.imread(shared_data / "bacteria_phase_tyx_uint8_labels.tif")
    tracks = np.loadtxt(shared_data / "bacteria_phase_tyx_uint8_tracks.txt", dtype=int)
    return gt, tracks


def test_ctc_export_of_ground_truth_reproduces_its_tracks_file(bacteria, tmp_path):
    gt, ref = bacteria
    parents = {int(lab): int(p) for lab, _b, _e, p in ref}
    out = export_ctc(gt, tmp_path / "01_RES", parents=parents)
    got = np.loadtxt(out / "res_track.txt", dtype=int)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, ref.tolist()))
    masks = sorted(p.name for p in out.glob("mask*.tif"))
    assert masks[0] == "mask000.tif" and masks[-1] == "mask032.tif" and len(masks) == 33
    m = tifffile.imread(out / "mask017.tif")
    assert m.dtype == np.uint16
    np.testing.assert_array_equal(m, gt[17])


def test_split_gaps_gives_continuous_tracks(bacteria):
    gt, ref = bacteria
    tracks, relabel = ctc_tracks(gt, split_gaps=True)
    # label 82 is missing on frames 16-18 in the ground truth: two tracks, linked
    t82 = [t for t in tracks if t[0] == 82]
    assert t82 == [(82, 13, 15, 0)]
    [new] = [t for t in tracks if t[3] == 82 and t[0] not in ref[:, 0]]
    assert new[1:3] == (19, 20)
    assert relabel[(19, 82)] == new[0] and relabel[(13, 82)] == 82


def test_object_table_csv_and_tracks(bacteria, tmp_path):
    gt, _ = bacteria
    rows = object_table(gt[:3], scale=(5.0, 0.1, 0.2), translate=(0, 10, 20))
    r = next(r for r in rows if r["frame"] == 1 and r["label_id"] == 8)
    yy, xx = np.nonzero(gt[1] == 8)
    assert r["area_px"] == len(yy) and r["area"] == pytest.approx(len(yy) * 0.02)
    assert r["centroid_data"] == pytest.approx((yy.mean(), xx.mean()))
    assert r["centroid_world"] == pytest.approx((10 + 0.1 * yy.mean(), 20 + 0.2 * xx.mean()))
    path = save_table_csv(rows, tmp_path / "objects.csv")
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert list(table[0]) == [
        "frame",
        "label_id",
        "area_px",
        "area",
        "y_px",
        "x_px",
        "y_world",
        "x_world",
    ]
    data = tracks_array(rows)
    assert data.shape == (len(rows), 4)
    assert (np.diff(data[:, 0]) >= 0).all()
    k = np.flatnonzero((data[:, 0] == 8) & (data[:, 1] == 1))[0]
    assert data[k, 2:] == pytest.approx((yy.mean(), xx.mean()))


def test_tracks_layer_lies_on_the_objects(make_napari_viewer, bacteria):
    from napari_sam2.adapter.propagate import add_tracks_layer

    gt, _ = bacteria
    viewer = make_napari_viewer()
    labels = viewer.add_labels(gt[:5].astype(np.int32), scale=(1, 0.5, 0.5), translate=(0, 3, 4))
    tracks = add_tracks_layer(viewer, labels, time_axis=0)
    assert tracks.name == f"{labels.name} tracks"
    ids = set(np.unique(gt[:5])) - {0}
    assert set(np.unique(tracks.data[:, 0]).astype(int)) == ids
    row = tracks.data[(tracks.data[:, 0] == 8) & (tracks.data[:, 1] == 1)][0]
    world = tracks.data_to_world(row[1:])
    yy, xx = np.nonzero(gt[1] == 8)
    assert world[1:] == pytest.approx((3 + 0.5 * yy.mean(), 4 + 0.5 * xx.mean()))
    assert labels.data_to_world((1, yy.mean(), xx.mean())) == pytest.approx(world)
