"""Fine-tuning the mask decoder (engine/finetune*.py, the CLI): real images and labels from
tests/data, the real SAM 2.1 tiny architecture with random weights at input size 256."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tifffile = pytest.importorskip("tifffile")

from napari_sam2.engine import Segmenter  # noqa: E402
from napari_sam2.engine.errors import Cancelled, LabelsError, ModelError  # noqa: E402
from napari_sam2.engine.model.checkpoints import file_sha256  # noqa: E402
from napari_sam2.engine.model.state_dict import read_state_dict  # noqa: E402
from napari_sam2.engine.training.finetune import card_path_for, finetune, save_checkpoint  # noqa: E402

CROP = 128  # the top-left 128 x 128 of the nuclei image: 12 whole or cut nuclei
DECODER = "sam_mask_decoder."


@pytest.fixture(scope="module")
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")[:CROP, :CROP]
    lab = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif")[:CROP, :CROP]
    return img, lab.astype(np.int32)


def _n_objects(lab, min_area=4):
    _, counts = np.unique(lab[lab > 0], return_counts=True)
    return int((counts >= min_area).sum())


@pytest.fixture(scope="module")
def trained(nuclei, sam2_random_segmenter, tmp_path_factory):
    """One short training run (no validation: the last epoch is written)."""
    img, lab = nuclei
    out = tmp_path_factory.mktemp("finetune") / "ft.pt"
    calls = []
    res = finetune(
        [img], [lab], out=out, segmenter=sam2_random_segmenter, epochs=3, lr=1e-3,
        batch_size=6, val_fraction=0.0, corrective_clicks=1, seed=0, names=["nuclei"],
        progress=lambda d, t: calls.append((d, t)),
    )  # fmt: skip
    return res, out, calls


def test_training_loss_decreases(trained, nuclei):
    res, _, calls = trained
    assert [h["epoch"] for h in res.history] == [0, 1, 2, 3]
    assert res.history[0]["train_loss"] is None
    loss = res.train_loss
    assert len(loss) == 3 and all(np.isfinite(loss))
    assert loss[-1] < 0.8 * loss[0], loss
    # progress: one tick per encoded plane, then one per step (12 objects / 6 = 2 steps)
    steps = -(-_n_objects(nuclei[1]) // 6)
    assert steps == 2
    assert calls[-1] == (1 + 3 * steps, 1 + 3 * steps)
    assert [d for d, _ in calls] == list(range(1, 2 + 3 * steps))


def test_checkpoint_reloads_through_the_normal_path(trained, sam2_random_checkpoint, nuclei):
    res, out, _ = trained
    assert res.checkpoint == out and out.is_file()
    assert res.best_epoch == 3  # no validation: the last epoch is kept
    new = read_state_dict(out)
    base = read_state_dict(sam2_random_checkpoint)
    assert new.keys() == base.keys()
    changed = {k for k in new if not torch.equal(new[k], base[k])}
    assert changed and all(k.startswith(DECODER) for k in changed)
    # the encoder's feature projections of the decoder are frozen (their output is cached)
    assert not any(k.startswith((DECODER + "conv_s0", DECODER + "conv_s1")) for k in changed)
    assert any("transformer" in k for k in changed) and any("iou_prediction" in k for k in changed)

    seg = Segmenter("tiny", checkpoint=out, backend="sam2", device="cpu", image_size=256)
    assert seg.describe()["checkpoint_sha256"] == file_sha256(out)
    loaded = seg.backend.loaded.model.state_dict()
    assert torch.equal(loaded[DECODER + "iou_token.weight"], new[DECODER + "iou_token.weight"])
    img, lab = nuclei
    seg.set_image(img)
    [pred] = seg.predict(points=[(80, 80)])
    assert pred.mask.shape == (CROP, CROP) and pred.mask.dtype == bool
    assert np.all(np.isfinite(pred.scores))


def test_card_fields(trained, sam2_random_checkpoint, nuclei):
    res, out, _ = trained
    path = card_path_for(out)
    assert res.card_path == path and path.name == "ft.card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    assert card["base_model"] == "sam2.1-tiny" and card["size"] == "tiny"
    assert card["base_checkpoint"] == str(sam2_random_checkpoint)
    assert card["base_checkpoint_sha256"] == file_sha256(sam2_random_checkpoint)
    assert card["checkpoint_sha256"] == file_sha256(out)
    assert card["image_size"] == 256 and card["trained"] == ["mask decoder"]
    assert card["data"] == [{"name": "nuclei", "planes": [[]]}]
    n = _n_objects(nuclei[1])
    assert (card["n_objects"], card["n_train_objects"], card["n_val_objects"]) == (n, n, 0)
    assert (card["epochs"], card["epochs_run"], card["best_epoch"], card["seed"]) == (3, 3, 3, 0)
    assert card["val_miou_before"] == {"point": None, "box": None}  # no validation set
    assert [h["train_loss"] for h in card["history"][1:]] == pytest.approx(res.train_loss)
    assert card["seconds"] > 0 and card["created"].endswith("+00:00")
    assert set(card["software"]) == {"napari-sam2", "torch", "sam2"}


def test_cancel_leaves_no_file(nuclei, sam2_random_segmenter, tmp_path):
    img, lab = nuclei
    out = tmp_path / "cancelled.pt"
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 2:  # after the first training step
            cancel.set()

    with pytest.raises(Cancelled):
        finetune(
            [img], [lab], out=out, segmenter=sam2_random_segmenter, epochs=5, batch_size=4,
            val_fraction=0.0, corrective_clicks=0, cancel=cancel, progress=progress,
        )  # fmt: skip
    assert seen == [(1, 16), (2, 16)]  # one plane encoded, one step of 5 x 3, then stopped
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no card, no temporary file
    cancel.set()  # cancelled from the start: nothing is even encoded
    with pytest.raises(Cancelled):
        finetune([img], [lab], out=out, segmenter=sam2_random_segmenter, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_cancel_while_saving_removes_the_temporary_file(tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        save_checkpoint({"w": torch.ones(3)}, tmp_path / "m.pt", cancel=cancel)
    assert list(tmp_path.iterdir()) == []
    saved = save_checkpoint({"w": torch.ones(3)}, tmp_path / "m.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert torch.equal(torch.load(saved, weights_only=True)["model"]["w"], torch.ones(3))


def test_bad_input_raises_typed_errors(nuclei, sam2_random_segmenter, classical_segmenter):
    img, lab = nuclei
    with pytest.raises(LabelsError, match="no object"):
        finetune([img], [np.zeros_like(lab)], segmenter=sam2_random_segmenter)
    with pytest.raises(LabelsError, match="shape"):
        finetune([img], [lab[:100]], segmenter=sam2_random_segmenter)
    with pytest.raises(LabelsError, match="1 image"):
        finetune([img], [lab, lab], segmenter=sam2_random_segmenter)
    with pytest.raises(ModelError, match="SAM 2"):
        finetune([img], [lab], segmenter=classical_segmenter)
    with pytest.raises(ValueError, match="card"):
        finetune([img], [lab], segmenter=sam2_random_segmenter, out="model.json")


def test_loss_target_caps_the_resolution():
    from napari_sam2.engine.training.train import loss_target

    mask = np.zeros((600, 400), bool)
    mask[300:, :200] = True
    assert loss_target(mask, 1024) is mask  # planes up to the input size: as they are
    small = loss_target(mask, 256)
    assert small.shape == (256, 171) and small.dtype == bool
    assert small[128:, :85].all() and not small[:127].any() and not small[:, 86:].any()


@pytest.mark.slow
def test_same_seed_same_result(nuclei, sam2_random_segmenter):
    img, lab = nuclei
    kw = dict(segmenter=sam2_random_segmenter, epochs=2, lr=1e-3, batch_size=8, seed=3)
    a = finetune([img], [lab], **kw)
    b = finetune([img], [lab], **kw)
    assert a.history == b.history
    c = finetune([img], [lab], **{**kw, "seed": 4})
    assert c.history != a.history


@pytest.mark.slow
def test_validation_is_the_evaluation_click_one_and_early_stopping(
    nuclei, sam2_random_segmenter, sam2_random_checkpoint, tmp_path
):
    """Validation mIoU = the evaluation protocol's first click; the best epoch is written."""
    from napari_sam2.engine.training import data as fd
    from napari_sam2.engine.training.evaluate import evaluate

    img, lab = nuclei
    out = tmp_path / "es.pt"
    res = finetune(
        [img], [lab], out=out, segmenter=sam2_random_segmenter, epochs=4, lr=3e-3,
        batch_size=8, val_fraction=0.3, patience=1, seed=1,
    )  # fmt: skip
    hist = res.history
    scores = [np.mean([h["val_point"], h["val_box"]]) for h in hist]
    assert res.best_epoch == int(np.argmax(scores))  # first best
    run = len(hist) - 1
    assert run == 4 or max(scores[run - 1 :]) <= scores[res.best_epoch]
    assert res.card["n_val_objects"] == round(0.3 * _n_objects(lab))
    # the same validation objects through the ordinary evaluation: same click-1 IoU
    objs = fd.collect_objects(
        [fd.TrainPlane("x", (), lab)],
    )
    _, val = fd.split_objects(objs, [fd.TrainPlane("x", (), lab)], 0.3, 1)
    val_lab = np.where(np.isin(lab, [o.label_id for o in val]), lab, 0)
    for kind in ("point", "box"):
        ev = evaluate(sam2_random_segmenter, img, val_lab, n_clicks=1, first=kind)
        assert ev.mean_iou[0] == pytest.approx(hist[0][f"val_{kind}"], abs=1e-6)
    new, base = read_state_dict(out), read_state_dict(sam2_random_checkpoint)
    same = all(torch.equal(new[k], base[k]) for k in new)
    assert same == (res.best_epoch == 0)
    assert res.val_after == {k: hist[res.best_epoch][k] for k in ("val_point", "val_box")}


@pytest.mark.slow
def test_cli_finetune_end_to_end(nuclei, sam2_random_checkpoint, tmp_path, capsys):
    from napari_sam2.cli import main

    img, lab = nuclei
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    out = tmp_path / "cli.pt"
    rc = main(
        ["finetune", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
         "--out", str(out), "--checkpoint", str(sam2_random_checkpoint), "--image-size", "256",
         "--device", "cpu", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3"]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert out.is_file() and card_path_for(out).is_file()
    card = json.loads(card_path_for(out).read_text(encoding="utf-8"))
    assert card["data"] == [{"name": "img.tif", "planes": [[]]}]
    assert card["epochs"] == 2 and card["n_val_objects"] == 2
    assert "val mIoU point" in text and f"wrote {out}" in text
    # usage errors: exit code 2, nothing written
    assert main(["finetune", str(tmp_path / "img.tif"), "--labels", "a.tif", "b.tif",
                 "--out", str(tmp_path / "x.pt")]) == 2  # fmt: skip
    assert not (tmp_path / "x.pt").exists()
