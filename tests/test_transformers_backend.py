"""The transformers route: converter, backend parity with the official SAM 2 backend.

Parity: the same random-weight SAM 2.1 tiny (image size 256), once as the official ``.pt``
through ``backend="sam2"`` and once converted to a transformers folder through
``backend="transformers"``, must give the same masks on a real image.  Random weights make
near-empty/near-full masks at the usual threshold 0, which would agree trivially, so the
masks are also compared at the median of the predicted logits (about half the image).
"""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import tifffile

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from napari_sam2.engine.errors import (  # noqa: E402
    CheckpointMismatchError,
    CheckpointNotFoundError,
    MissingExtraError,
)
from napari_sam2.engine.model import convert as C  # noqa: E402
from napari_sam2.engine.segmenter import Segmenter  # noqa: E402

SIZE = 256  # tests/conftest.py TEST_IMAGE_SIZE


def iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def hf_folder(sam2_random_checkpoint, tmp_path_factory):
    return C.pt_to_hf(
        sam2_random_checkpoint, tmp_path_factory.mktemp("hf") / "tiny", image_size=SIZE
    )


@pytest.fixture(scope="module")
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    lab = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif")
    return img, lab


@pytest.fixture(scope="module")
def pair(sam2_random_segmenter, hf_folder, nuclei):
    """(official, transformers) segmenters on the same image."""
    a = sam2_random_segmenter
    a.set_image(nuclei[0])
    b = Segmenter("tiny", hf_folder, backend="transformers", device="cpu").set_image(nuclei[0])
    return a, b


def _objects(lab, n):
    ids = [int(i) for i in np.unique(lab) if i][:n]
    pix = [np.argwhere(lab == i) for i in ids]
    cents = [tuple(int(v) for v in p.mean(0).round()) for p in pix]
    boxes = [(*p.min(0), *p.max(0)) for p in pix]
    return cents, boxes, [lab == i for i in ids]


def _mask_clicks(c, m):
    from napari_sam2.engine.prompts import MaskPrompt, ObjectPrompt, Points

    return [ObjectPrompt(points=Points([c[k]], [1]), mask=MaskPrompt(m[k])) for k in range(3)]


PROMPTS = {  # (centroids, boxes, masks) of real nuclei → prompts
    "click": lambda c, b, m: {"points": [c[0]]},
    "box": lambda c, b, m: {"boxes": [b[1]]},
    "several": lambda c, b, m: {"boxes": b[:4]},
    "clicks+box": lambda c, b, m: {
        "points": [c[2], c[3]],
        "point_labels": [1, 0],
        "boxes": [b[2]],
    },
    "masks": lambda c, b, m: {"masks": m[:2]},  # no sparse token at all
    "several mask+click": lambda c, b, m: {"objects": _mask_clicks(c, m)},
}


def _compare(a, b, prompts, threshold=None):
    saved = a.backend.mask_threshold, b.backend.mask_threshold
    try:
        if threshold is not None:
            a.backend.mask_threshold = b.backend.mask_threshold = threshold
        pa, pb = a.predict(**prompts), b.predict(**prompts)
    finally:
        a.backend.mask_threshold, b.backend.mask_threshold = saved
    assert len(pa) == len(pb)
    return pa, pb


@pytest.mark.parametrize("kind", list(PROMPTS))
def test_parity_masks_and_scores(pair, nuclei, kind):
    a, b = pair
    prompts = PROMPTS[kind](*_objects(nuclei[1], 4))
    pa, pb = _compare(a, b, prompts)
    for x, y in zip(pa, pb, strict=True):
        assert x.candidates.shape == y.candidates.shape
        assert iou(x.mask, y.mask) > 0.99
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-3)
        np.testing.assert_allclose(x.low_res, y.low_res, atol=1e-3)
    # each object at the median of its own official logits: about half the image is in
    # the mask, so agreement is not trivial (all objects still decoded in one batch)
    for k, x in enumerate(pa):
        qa, qb = _compare(a, b, prompts, threshold=float(np.median(x.low_res[0])))
        assert 0.05 < qa[k].mask.mean() < 0.95, qa[k].mask.mean()
        assert iou(qa[k].mask, qb[k].mask) > 0.99


def test_embeddings_equal_and_cached(pair):
    a, b = pair
    ea, eb = a.embedding(), b.embedding()
    assert torch.allclose(ea["image_embed"], eb["image_embed"], atol=1e-4)
    for x, y in zip(ea["high_res_feats"], eb["high_res_feats"], strict=True):
        assert x.shape == y.shape
        assert torch.allclose(x, y, atol=1e-4)
    n = b.stats.encodes
    b.predict(points=[(100, 100)])
    b.predict(points=[(200, 300)])
    assert b.stats.encodes == n  # one encode per plane, then the cache
    d = b.describe()
    assert d["backend"] == "transformers" and d["image_size"] == SIZE
    assert d["size"] == "tiny" and d["version"] == "2.1" and len(d["checkpoint_sha256"]) == 64


def test_segment_into_writes_labels(pair, nuclei):
    _, b = pair
    labels = np.zeros(nuclei[0].shape, np.int32)
    labels[0, 0] = 7
    _, boxes, _ = _objects(nuclei[1], 2)
    ids = b.segment_into(labels, boxes=boxes[:2])
    assert ids == [8, 9]
    assert labels[0, 0] == 7  # policy "keep": existing labels are never painted over
    assert (labels == 8).any() and (labels == 9).any()


def test_pt_checkpoint_converted_on_the_fly(sam2_random_checkpoint, pair, nuclei):
    a, _ = pair
    c = Segmenter(
        "tiny", sam2_random_checkpoint, backend="transformers", device="cpu", image_size=SIZE
    ).set_image(nuclei[0])
    cents, _, _ = _objects(nuclei[1], 1)
    [pa], [pc] = a.predict(points=[cents[0]]), c.predict(points=[cents[0]])
    np.testing.assert_allclose(pa.low_res, pc.low_res, atol=1e-3)


def test_cancel_stops_the_encoder(pair):
    import threading

    from napari_sam2.engine.errors import Cancelled

    _, b = pair
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):  # raised by the hook before the first encoder block
        b.backend.encode(np.zeros((64, 64, 3), np.float32), cancel=ev)
    assert not b.backend._lock.locked()


def test_disk_cache_shared_between_sessions(hf_folder, nuclei, tmp_path):
    def session():
        s = Segmenter("tiny", hf_folder, backend="transformers", device="cpu", disk_cache=tmp_path)
        return s.set_image(nuclei[0][:128, :128])

    first = session()
    [p1] = first.predict(points=[(60, 60)])
    second = session()
    [p2] = second.predict(points=[(60, 60)])
    assert first.stats.encodes == 1 and second.stats.encodes == 0
    assert second.stats.disk_hits == 1
    np.testing.assert_array_equal(p1.mask, p2.mask)


def test_projection_propagation_and_no_everything(pair):
    from napari_sam2.engine.errors import ModelError

    _, b = pair
    stack = np.stack([np.asarray(b.source.raw_plane(()))] * 3)
    seg = Segmenter(predictor=b.backend).set_image(stack)
    labels = np.zeros(stack.shape, np.int32)
    seg.segment_into(labels, plane=(1,), boxes=[(40, 40, 90, 90)])
    report = seg.propagate(labels, (1,), mode="auto")  # random weights: may stop early
    assert report.mode == "projection" and report.label_ids == [1]
    assert report.planes_done >= 1 and not report.cancelled
    with pytest.raises(ModelError, match="no automatic"):
        seg.segment_everything(plane=(1,))
    with pytest.raises(ModelError, match="Video mode"):
        seg.propagate(labels, (1,), mode="video")


# ------------------------------------------------------------------------ converter
def test_roundtrip_pt_hf_pt_identical(sam2_random_checkpoint, hf_folder, tmp_path):
    back = C.hf_to_pt(hf_folder, tmp_path / "back.pt")
    sd0 = torch.load(sam2_random_checkpoint, weights_only=True)["model"]
    sd1 = torch.load(back, weights_only=True)["model"]
    assert sorted(sd0) == sorted(sd1)
    for k in sd0:
        assert sd0[k].dtype == sd1[k].dtype and torch.equal(sd0[k], sd1[k]), k


def test_mapped_keys_are_transformers_names(sam2_random_checkpoint):
    """Every official key lands on a key of transformers' Sam2VideoModel, shapes equal."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    sd = torch.load(sam2_random_checkpoint, weights_only=True)["model"]
    hf = C.official_to_hf(sd)
    video = Sam2VideoModel(Sam2VideoConfig()).state_dict()
    assert set(hf) == set(video)
    assert all(hf[k].shape == video[k].shape for k in hf)
    assert C.official_key_to_hf("image_encoder.neck.convs.0.conv.weight") == (
        "vision_encoder.neck.convs.0.weight"
    )
    assert C.official_key_to_hf("sam_mask_decoder.output_hypernetworks_mlps.2.layers.1.bias") == (
        "mask_decoder.output_hypernetworks_mlps.2.layers.0.bias"
    )
    assert C.official_key_to_hf("memory_encoder.mask_downsampler.encoder.12.weight") == (
        "memory_encoder.mask_downsampler.final_conv.weight"
    )
    assert hf["prompt_encoder.point_embed.weight"].shape == (4, 256)


def test_convert_cli_both_ways(sam2_random_checkpoint, tmp_path, capsys):
    from napari_sam2.cli import main

    folder = tmp_path / "hf"
    assert main(["convert", str(sam2_random_checkpoint), str(folder)]) == 0
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert (
        C.config_image_size(__import__("json").loads((folder / "config.json").read_text())) == 1024
    )
    assert main(["convert", str(folder), str(tmp_path / "x.pt")]) == 0
    assert (tmp_path / "x.pt").stat().st_size > 1_000_000
    assert main(["convert", str(tmp_path / "missing.pt"), str(tmp_path / "y")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_image_only_folder_to_pt_is_refused(hf_folder, tmp_path):
    from transformers import Sam2Model

    Sam2Model.from_pretrained(hf_folder).save_pretrained(tmp_path / "img_only")
    with pytest.raises(CheckpointMismatchError, match="only the image model"):
        C.hf_to_pt(tmp_path / "img_only", tmp_path / "x.pt")
    # ... but it loads as a transformers model
    seg = Segmenter("tiny", tmp_path / "img_only", backend="transformers", device="cpu")
    assert seg.describe()["image_size"] == SIZE


# ---------------------------------------------------------------------------- errors
def test_missing_transformers_message(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("No module named 'transformers'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MissingExtraError, match=r"napari-sam2\[transformers\]") as e:
        Segmenter(backend="transformers", random_weights=True, device="cpu")
    assert isinstance(e.value, ImportError)


def test_hub_id_not_cached(monkeypatch):
    from napari_sam2.engine.model import hf as hf_models

    monkeypatch.setattr(hf_models, "_hub_files", lambda repo: (None, []))
    with pytest.raises(CheckpointNotFoundError, match="not in the local Hugging Face cache"):
        Segmenter(backend="transformers", checkpoint="facebook/sam2.1-hiera-tiny", device="cpu")
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        Segmenter(backend="transformers", checkpoint="./nope/model", device="cpu")
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        Segmenter(backend="transformers", checkpoint="models/sam2.1_tiny.pt", device="cpu")


def test_not_a_sam2_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointNotFoundError, match="config.json and"):
        Segmenter(backend="transformers", checkpoint=tmp_path, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("version", ["2.1", "2.0"])
@pytest.mark.parametrize("size", ["tiny", "small", "base_plus", "large"])
def test_every_size_converts(size, version):
    """Config and key mapping of every registry model fit transformers' Sam2Model."""
    from transformers import Sam2Config, Sam2Model

    from napari_sam2.engine.model.load import build_model
    from napari_sam2.engine.model.registry import get_spec

    sd = build_model(get_spec(size, version)).state_dict()
    fields = C.hf_config_dict(size, version)
    fields.pop("model_type")
    model = Sam2Model(Sam2Config(**fields))
    missing, _ = model.load_state_dict(C.official_to_hf(sd), strict=False)
    assert missing == []
    back = C.hf_to_official(C.official_to_hf(sd))
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
