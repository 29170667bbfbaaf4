"""Simulated-click evaluation (engine/training/evaluate.py) and ``napari-sam2 evaluate``."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
import tifffile

from napari_sam2.cli import main
from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends.base import Prediction
from napari_sam2.engine.errors import Cancelled, LabelsError
from napari_sam2.engine.training.annotator import corrective_click, interior_point
from napari_sam2.engine.training.evaluate import CSV_COLUMNS, evaluate

CROP = (slice(0, 192), slice(0, 192))  # 19 nuclei: fast on the classical backend


@pytest.fixture(scope="module")
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")[CROP]
    gt = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif")[CROP]
    return img, gt


class OracleBackend:
    """Test-only predictor: answers with the ground-truth object the prompt designates."""

    name = "oracle"

    def __init__(self, gt):
        self.gt = gt
        self.calls = 0

    def cache_key(self):
        return ("oracle",)

    def describe(self):
        return {"backend": self.name}

    def encode(self, image, cancel=None):
        return None

    def predict(self, embedding, objects, *, multimask=None):
        out = []
        for obj in objects:
            self.calls += 1
            if obj.points is not None:
                r, c = obj.points.positive[0].astype(int)
                lid = self.gt[r, c]
            else:  # the ID covering most of the box
                ids, counts = np.unique(self.gt[obj.box.slices()], return_counts=True)
                counts[ids == 0] = 0
                lid = ids[np.argmax(counts)]
            mask = self.gt == lid if lid else np.zeros(self.gt.shape, bool)
            out.append(Prediction(mask[None], np.array([1.0]), None, obj))
        return out


@pytest.mark.parametrize("first", ["point", "box"])
def test_oracle_gives_iou_one(nuclei, first):
    img, gt = nuclei
    oracle = OracleBackend(gt)
    res = evaluate(Segmenter(predictor=oracle), img, gt, n_clicks=4, first=first)
    ids = sorted(int(v) for v in np.unique(gt) if v)
    assert res.label_ids == ids and res.iou.shape == (len(ids), 4)
    assert (res.iou == 1.0).all()
    assert oracle.calls == len(ids)  # a perfect mask needs no corrective click
    assert res.backend == "oracle"


def test_interior_point_and_corrective_clicks():
    gt = np.zeros((40, 40), bool)
    gt[5:25, 5:15] = True  # 20 x 10 rectangle
    assert gt[interior_point(gt)]
    assert interior_point(np.pad(np.ones((3, 3), bool), 2)) == (3, 3)  # the centre
    missed = gt.copy()
    missed[15:25, 5:15] = False  # the lower half is missed: positive click inside it
    (r, c), positive = corrective_click(missed, gt)
    assert positive and 15 <= r < 25 and 5 <= c < 15
    extra = gt.copy()
    extra[30:38, 20:36] = True  # a false region larger than a 1-px miss: negative click
    extra[5, 5] = False
    (r, c), positive = corrective_click(extra, gt)
    assert not positive and 30 <= r < 38 and 20 <= c < 36
    with pytest.raises(ValueError, match="no error"):
        corrective_click(gt, gt)


def test_classical_curve_and_determinism(nuclei):
    img, gt = nuclei
    a = evaluate(Segmenter(backend="classical"), img, gt, n_clicks=3, seed=1)
    b = evaluate(Segmenter(backend="classical"), img, gt, n_clicks=3, seed=1)
    assert len(a.label_ids) == 19 and a.backend == "classical"
    np.testing.assert_array_equal(a.iou, b.iou)
    assert a.clicks == b.clicks
    curve = a.mean_iou
    print("classical mIoU per click (point first):", np.round(curve, 4))
    assert 0.3 < curve[0] < 1.0  # the weight-free backend finds most nuclei roughly
    assert (curve[1:] >= curve[0]).all()  # corrective clicks do not hurt on average
    for lid, given in a.clicks.items():  # first click positive, inside its object
        r, c, pos = given["points"][0]
        assert pos and gt[r, c] == lid
        assert len(given["points"]) <= 3


def test_box_first_plane_of_stack_and_max_objects(nuclei):
    img, gt = nuclei
    stack, gts = np.stack([img[::-1], img]), np.stack([gt[::-1], gt])
    seg = Segmenter(backend="classical")
    res = evaluate(seg, stack, gts, plane=(1,), first="box", n_clicks=2, max_objects=5, seed=3)
    again = evaluate(seg, None, gt, plane=(1,), first="box", n_clicks=2, max_objects=5, seed=3)
    assert res.plane == (1,) and len(res.label_ids) == 5
    assert res.label_ids == again.label_ids and set(res.label_ids) <= set(np.unique(gt).tolist())
    np.testing.assert_array_equal(res.iou, again.iou)
    lid = res.label_ids[0]
    rows, cols = np.nonzero(gt == lid)
    assert res.clicks[lid]["box"] == [rows.min(), cols.min(), rows.max(), cols.max()]
    flat = evaluate(seg, img, gt, first="box", n_clicks=2)
    assert flat.iou[0, 0] == pytest.approx(
        evaluate(seg, stack, gts, plane=(1,), first="box", n_clicks=1).iou[0, 0]
    )


def test_bad_input(nuclei):
    img, gt = nuclei
    seg = Segmenter(backend="classical")
    with pytest.raises(LabelsError, match="match neither"):
        evaluate(seg, img, gt[:10])
    with pytest.raises(ValueError, match="first"):
        evaluate(seg, img, gt, first="scribble")
    import threading

    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        evaluate(seg, img, gt, cancel=ev)
    seen = []
    evaluate(seg, img, gt, n_clicks=1, max_objects=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]


def test_cli_writes_three_files(nuclei, tmp_path, capsys):
    img, gt = nuclei
    tifffile.imwrite(tmp_path / "a.tif", img[:96, :96])
    tifffile.imwrite(tmp_path / "a_labels.tif", gt[:96, :96])
    tifffile.imwrite(tmp_path / "b.tif", img[96:, 96:])
    tifffile.imwrite(tmp_path / "b_labels.tif", gt[96:, 96:])
    out = tmp_path / "eval"
    argv = ["evaluate", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--labels",
            str(tmp_path / "a_labels.tif"), str(tmp_path / "b_labels.tif"),
            "--backend", "classical", "--clicks", "3", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "mIoU" in text and "classical" in text
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    n_a = len(np.unique(gt[:96, :96])) - 1
    n_b = len(np.unique(gt[96:, 96:])) - 1
    assert len(rows) == 3 * (n_a + n_b)
    assert {r["image"] for r in rows} == {"a.tif", "b.tif"}
    assert {r["clicks"] for r in rows} == {"1", "2", "3"}
    doc = json.loads((out / "results.json").read_text())
    assert doc["n_objects"] == n_a + n_b and len(doc["mean_iou"]) == 3
    assert doc["backend"] == "classical" and [i["image"] for i in doc["images"]] == [
        "a.tif",
        "b.tif",
    ]
    ious = np.array([float(r["iou"]) for r in rows]).reshape(-1, 3)
    np.testing.assert_allclose(ious.mean(axis=0), doc["mean_iou"], atol=1e-5)
    png = out / "curve.png"
    if importlib.util.find_spec("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not png.exists() and "no plot" in text
    # one labels file per image
    assert main(argv[:3] + ["--labels", str(tmp_path / "a_labels.tif")]) == 2


@pytest.mark.slow
def test_sam2_random_weights_plumbing(sam2_random_segmenter, nuclei):
    img, gt = nuclei
    res = evaluate(
        sam2_random_segmenter, img[:128, :128], gt[:128, :128], n_clicks=2, max_objects=3
    )
    assert res.backend == "sam2" and res.iou.shape == (3, 2)
    assert ((res.iou >= 0) & (res.iou <= 1)).all()
    for given in res.clicks.values():
        assert 1 <= len(given["points"]) <= 2
