"""The real SAM 2.1 architecture (random weights, image_size=256) through the real paths:
checkpoint files, hydra, predictor, prompt packing, cache."""

from __future__ import annotations

import hashlib
import re
import warnings

import numpy as np
import pytest
import torch

from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends._sam_common import to_xy
from napari_sam2.engine.backends.base import Prediction, Predictor
from napari_sam2.engine.backends.sam2 import Sam2Backend, has_compiled_extension
from napari_sam2.engine.errors import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    ImageError,
)
from napari_sam2.engine.model import checkpoints, state_dict
from napari_sam2.engine.model.load import build_model, load_sam2
from napari_sam2.engine.model.registry import get_spec
from napari_sam2.engine.prompts import Box, MaskPrompt, ObjectPrompt, Points

TEST_IMAGE_SIZE = 256  # what the sam2_random_* fixtures use
H, W = 72, 128  # non-square: SAM resizes without keeping the aspect ratio
HOLE_WARNING = re.compile(r"_C|post-processing|hole", re.IGNORECASE)


def _image(dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(100, 400, (H, W))
    img[10:30, 60:100] += 2000
    return img.astype(dtype)


@pytest.fixture
def seg(sam2_random_segmenter):
    return sam2_random_segmenter.set_image(_image())


def _check(pred: Prediction, k: int, hw=(H, W)) -> None:
    assert pred.candidates.shape == (k, *hw)
    assert pred.candidates.dtype == bool
    assert pred.scores.shape == (k,)
    assert np.all(np.isfinite(pred.scores))
    assert np.all(np.diff(pred.scores) <= 0)  # best candidate first
    assert pred.low_res.shape == (k, TEST_IMAGE_SIZE // 4, TEST_IMAGE_SIZE // 4)
    assert pred.mask.shape == hw


# --------------------------------------------------------------------- end to end
def test_backend_is_real_sam2(sam2_random_segmenter, sam2_random_checkpoint):
    seg = sam2_random_segmenter
    assert isinstance(seg.backend, Sam2Backend)
    assert isinstance(seg.backend, Predictor)
    assert seg.notice is None
    d = seg.backend.describe()
    assert d["model"] == "sam2.1-tiny" and d["image_size"] == TEST_IMAGE_SIZE
    assert d["checkpoint"] == str(sam2_random_checkpoint) and not d["random_weights"]
    assert d["device"] == "cpu" and d["precision"] == "fp32"
    assert d["hole_filling"] is False
    assert type(seg.backend.loaded.model).__name__ == "SAM2Base"


def test_single_click_gives_three_candidates(seg):
    [pred] = seg.predict(points=[(20, 80)])
    _check(pred, 3)
    assert pred.info["multimask"] is True
    [one] = seg.predict(points=[(20, 80)], multimask=False)
    _check(one, 1)


def test_box_gives_one_candidate(seg):
    [pred] = seg.predict(boxes=[(5, 50, 35, 110)])
    _check(pred, 1)


def test_batched_boxes_one_result_each(seg):
    boxes = [(5, 50, 35, 110), (40, 5, 70, 40), (0, 0, 71, 127)]
    preds = seg.predict(boxes=boxes)
    assert len(preds) == 3
    for p, b in zip(preds, boxes, strict=True):
        _check(p, 1)
        assert p.prompt.box == Box(*b)


def test_batched_clicks_and_mixed_prompts_keep_order(seg):
    mask = np.zeros((H, W), bool)
    mask[10:30, 60:100] = True
    objects = [
        ObjectPrompt(points=Points([[20, 80]], [1])),
        ObjectPrompt(box=Box(40, 5, 70, 40), points=Points([[50, 20], [60, 30]], [1, 0])),
        ObjectPrompt(mask=MaskPrompt(mask)),
        ObjectPrompt(points=Points([[50, 10]], [1])),
        ObjectPrompt(mask=MaskPrompt(mask), points=Points([[15, 70]], [1])),
    ]
    preds = seg.predict(objects=objects)
    assert [p.candidates.shape[0] for p in preds] == [3, 1, 1, 3, 1]
    for p, o in zip(preds, objects, strict=True):
        _check(p, p.candidates.shape[0])
        assert p.prompt == o.validated((H, W))


def test_stack_plane_and_segment_into(sam2_random_segmenter):
    seg = sam2_random_segmenter
    stack = np.stack([_image(), _image()[::-1]])
    seg.set_image(stack)
    labels = np.zeros((2, H, W), np.int32)
    labels[0, 0, 0] = 3
    ids = seg.segment_into(labels, plane=(1,), boxes=[(5, 50, 35, 110), (40, 5, 70, 40)])
    assert ids == list(range(4, 4 + len(ids)))
    assert labels[0, 0, 0] == 3 and labels[0].sum() == 3  # the other plane is untouched
    for i in ids:
        assert (labels[1] == i).any()


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(1).random((40, 50, 3)).astype(np.float32),  # RGB float
        np.random.default_rng(2).integers(0, 255, (40, 50, 4)).astype(np.uint8),  # RGBA
        np.full((40, 50), 7.0),  # constant
    ],
    ids=["rgb", "rgba", "constant"],
)
def test_image_kinds(sam2_random_segmenter, image):
    seg = sam2_random_segmenter.set_image(image)
    [pred] = seg.predict(points=[(20, 25)])
    _check(pred, 3, (40, 50))


def test_no_hole_filling_warning_during_predict(sam2_random_segmenter):
    seg = sam2_random_segmenter
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg.set_image(_image() + 1)  # a new plane: encode and decode
        seg.predict(points=[(20, 80)])
        seg.predict(boxes=[(5, 50, 35, 110), (40, 5, 70, 40)])
    bad = [str(w.message)[:200] for w in caught if HOLE_WARNING.search(str(w.message))]
    assert not bad


@pytest.mark.skipif(has_compiled_extension(), reason="sam2._C is compiled here")
def test_hole_filling_would_warn_without_extension():
    """Control for the test above: sam2's hole filling does warn when _C is missing."""
    from sam2.utils.misc import fill_holes_in_mask_scores

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fill_holes_in_mask_scores(torch.zeros(1, 1, 8, 8), 8)
    assert any(HOLE_WARNING.search(str(w.message)) for w in caught)


# ----------------------------------------------------------------------- the swap
def test_to_xy_swaps_row_col():
    rc = np.array([[1.0, 2.0], [3.5, 40.0]])
    xy = to_xy(rc)
    np.testing.assert_array_equal(xy, [[2.0, 1.0], [40.0, 3.5]])
    assert xy.dtype == np.float32
    np.testing.assert_array_equal(to_xy([7, 9]), [9, 7])
    assert to_xy(np.zeros((2, 3, 2))).shape == (2, 3, 2)
    rc[0, 0] = 99  # a copy, not a view
    assert xy[0, 1] == 1.0


def test_prompt_tensors_are_sam_xy_in_model_frame(sam2_random_segmenter):
    backend = sam2_random_segmenter.backend
    s = TEST_IMAGE_SIZE
    objects = [
        ObjectPrompt(points=Points([[10, 100], [60, 4]], [1, 0])),
        ObjectPrompt(box=Box(30, 20, 5, 120)),  # corners in any order
    ]
    coords, labels = backend.prompt_tensors(objects, (H, W))
    coords = coords.cpu().numpy()
    assert coords.shape == (2, 2, 2)
    # x = col / W * s, y = row / H * s
    np.testing.assert_allclose(coords[0, 0], [100 / W * s, 10 / H * s], rtol=1e-5)
    np.testing.assert_allclose(coords[0, 1], [4 / W * s, 60 / H * s], rtol=1e-5)
    np.testing.assert_allclose(coords[1], [[20 / W * s, 5 / H * s], [120 / W * s, 30 / H * s]])
    np.testing.assert_array_equal(labels.cpu().numpy(), [[1, 0], [2, 3]])
    # shorter prompts are padded with "not a point"
    _, padded = backend.prompt_tensors(
        [objects[0], ObjectPrompt(points=Points([[1, 1]], [1]))], (H, W)
    )
    np.testing.assert_array_equal(padded.cpu().numpy(), [[1, 0], [1, -1]])


def test_mask_to_logits(sam2_random_segmenter):
    backend = sam2_random_segmenter.backend
    m = np.zeros((H, W), bool)
    m[: H // 2] = True  # top half
    logits = backend.mask_to_logits(m)
    n = TEST_IMAGE_SIZE // 4
    assert tuple(logits.shape) == (1, n, n)
    assert (logits[0, : n // 2 - 1] > 0).all() and (logits[0, n // 2 + 1 :] < 0).all()


def test_encode_rejects_non_sam_input(sam2_random_segmenter):
    with pytest.raises(ImageError, match="float32"):
        sam2_random_segmenter.backend.encode(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageError):
        sam2_random_segmenter.backend.encode(np.zeros((8, 8), np.float32))


# -------------------------------------------------------------------------- cache
def test_cache_second_predict_same_plane_no_encode(sam2_random_segmenter):
    seg = sam2_random_segmenter
    rng = np.random.default_rng(42)
    stack = rng.integers(0, 1000, (2, 48, 64)).astype(np.uint16)
    seg.set_image(stack)
    e0, h0 = seg.stats.encodes, seg.stats.hits
    seg.predict(plane=(0,), points=[(20, 20)])
    assert seg.stats.encodes == e0 + 1
    assert seg.stats.last_encode_s > 0
    seg.predict(plane=(0,), points=[(30, 40)])
    seg.predict(plane=(0,), boxes=[(5, 5, 40, 60)])
    assert seg.stats.encodes == e0 + 1
    assert seg.stats.hits == h0 + 2
    seg.predict(plane=(1,), points=[(20, 20)])
    assert seg.stats.encodes == e0 + 2
    stack[0, 3, 3] += 1  # a changed pixel
    seg.predict(plane=(0,), points=[(20, 20)])
    assert seg.stats.encodes == e0 + 3
    emb = seg.embedding((1,))
    assert seg.stats.encodes == e0 + 3
    assert tuple(emb["image_embed"].shape[-2:]) == (TEST_IMAGE_SIZE // 16,) * 2
    assert emb["orig_hw"] == (48, 64)


def test_cached_embedding_gives_same_prediction(sam2_random_segmenter):
    """Restoring a plane from the cache decodes exactly like the fresh encode."""
    seg = sam2_random_segmenter
    stack = np.stack([_image(), _image()[::-1]])
    seg.set_image(stack)
    [first] = seg.predict(plane=(0,), points=[(20, 80)])
    seg.predict(plane=(1,), points=[(20, 80)])  # the predictor now holds plane 1
    [again] = seg.predict(plane=(0,), points=[(20, 80)])
    np.testing.assert_array_equal(first.candidates, again.candidates)
    np.testing.assert_allclose(first.scores, again.scores, rtol=1e-6)


def test_random_models_do_not_share_cache_keys():
    a = Sam2Backend(load_sam2("tiny", random_weights=True, device="cpu", image_size=256))
    b = Sam2Backend(load_sam2("tiny", random_weights=True, device="cpu", image_size=256))
    assert a.loaded.checkpoint is None and a.describe()["random_weights"]
    assert a.cache_key() != b.cache_key()


# -------------------------------------------------------------------- checkpoints
def test_checkpoint_loads_through_real_path(sam2_random_checkpoint):
    path = sam2_random_checkpoint
    loaded = load_sam2("tiny", checkpoint=path, device="cpu", image_size=TEST_IMAGE_SIZE)
    assert loaded.checkpoint == path
    assert loaded.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.spec == get_spec("tiny") and loaded.device.type == "cpu"
    saved = torch.load(path, map_location="cpu", weights_only=True)["model"]
    state = loaded.model.state_dict()
    for key in (
        "image_encoder.trunk.patch_embed.proj.weight",
        "sam_mask_decoder.iou_token.weight",
    ):
        torch.testing.assert_close(state[key], saved[key])
    assert not loaded.model.training


def test_checkpoint_folder_and_env_var(sam2_random_checkpoint, no_checkpoints, monkeypatch):
    folder = sam2_random_checkpoint.parent
    loaded = load_sam2(
        "tiny", checkpoint=folder, device="cpu", image_size=256, hash_checkpoint=False
    )
    assert loaded.checkpoint == sam2_random_checkpoint and loaded.checkpoint_sha256 is None
    # found through NAPARI_SAM2_CHECKPOINT_DIR: "auto" then means SAM 2, no notice
    monkeypatch.setenv(checkpoints.CHECKPOINT_DIR_ENV, str(folder))
    seg = Segmenter("tiny", backend="auto", device="cpu", image_size=256)
    assert isinstance(seg.backend, Sam2Backend) and seg.notice is None
    assert seg.backend.loaded.checkpoint == sam2_random_checkpoint


def test_loading_twice(sam2_random_checkpoint):
    kw = {"device": "cpu", "image_size": 256, "hash_checkpoint": False}
    a = load_sam2("tiny", checkpoint=sam2_random_checkpoint, **kw)
    b = load_sam2("tiny", checkpoint=sam2_random_checkpoint, **kw)
    assert a.model is not b.model
    ka = a.model.state_dict()["sam_mask_decoder.iou_token.weight"]
    kb = b.model.state_dict()["sam_mask_decoder.iou_token.weight"]
    torch.testing.assert_close(ka, kb)


def test_loading_after_another_hydra_initialisation(sam2_random_checkpoint, tmp_path):
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    was_initialized = gh.is_initialized()  # importing sam2 initialises hydra itself
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "other.yaml").write_text("answer: 42\n")
    gh.clear()
    try:
        initialize_config_dir(config_dir=str(tmp_path / "conf"), version_base=None)
        assert GlobalHydra.instance().is_initialized()
        loaded = load_sam2(
            "tiny",
            checkpoint=sam2_random_checkpoint,
            device="cpu",
            image_size=256,
            hash_checkpoint=False,
        )
        backend = Sam2Backend(loaded)
        emb = backend.encode(np.random.default_rng(0).random((32, 32, 3)).astype(np.float32))
        [pred] = backend.predict(emb, [ObjectPrompt(points=Points([[5, 5]], [1]))])
        assert pred.candidates.shape == (3, 32, 32)
        # hydra's global state is the other library's, untouched
        assert GlobalHydra.instance().is_initialized()
    finally:
        GlobalHydra.instance().clear()
        if was_initialized:
            initialize_config_module("sam2", version_base="1.2")


def test_checkpoint_of_wrong_size(tmp_path, sam2_random_checkpoint):
    small = build_model(get_spec("small"), image_size=256)
    path = tmp_path / "sam2.1_hiera_tiny.pt"  # the right name, the wrong weights
    torch.save({"model": small.state_dict()}, path)
    del small
    with pytest.raises(CheckpointMismatchError) as info:
        load_sam2("tiny", checkpoint=path, device="cpu", image_size=256)
    msg = str(info.value)
    assert "'small'" in msg and "looks like" in msg and "'tiny'" in msg
    # and the other way round
    with pytest.raises(CheckpointMismatchError, match="looks like a SAM 2.1 'tiny'"):
        load_sam2("small", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256)


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(4, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointMismatchError, match="does not look like any SAM 2 size"):
        load_sam2("tiny", checkpoint=path, device="cpu", image_size=256)


def test_guess_size_and_version(sam2_random_checkpoint):
    sd = state_dict.read_state_dict(sam2_random_checkpoint)
    assert state_dict.guess_size(sd) == "tiny"
    assert state_dict.guess_version(sd) == "2.1"
    assert state_dict.guess_size({}) is None


def test_truncated_checkpoint(tmp_path, sam2_random_checkpoint):
    data = sam2_random_checkpoint.read_bytes()
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointCorruptError) as info:
        load_sam2("tiny", checkpoint=path, device="cpu", image_size=256)
    msg = str(info.value)
    assert "truncated" in msg and "Download it again" in msg and str(path) in msg


@pytest.mark.parametrize(
    "content", [b"", b"<html>404 Not Found</html>", b"\x00" * 1000], ids=["empty", "html", "zeros"]
)
def test_garbage_checkpoint(tmp_path, content):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointCorruptError):
        state_dict.read_state_dict(path)


def test_checkpoint_without_weights(tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointCorruptError, match="no model weights"):
        state_dict.read_state_dict(path)


def test_missing_checkpoint_file(tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointNotFoundError) as info:
        load_sam2("tiny", checkpoint=path, device="cpu")
    msg = str(info.value)
    assert "sam2.1_hiera_tiny.pt" in msg
    assert get_spec("tiny").url in msg


def test_official_size_checkpoints_fit_a_reduced_image_size():
    """Weights saved from the 1024 px model (the official files) load at image_size=256."""
    full = build_model(get_spec("tiny")).state_dict()
    small_input = build_model(get_spec("tiny"), image_size=256)
    assert small_input.image_size == 256
    small_input.load_state_dict(full, strict=True)


class _CancelAfter:
    """A cancel event that turns on after ``n`` checks (deterministic mid-encode cancel)."""

    def __init__(self, n):
        self.n, self.checks = n, 0

    def is_set(self):
        self.checks += 1
        return self.checks > self.n


def test_cancel_stops_the_encode_between_blocks(sam2_random_segmenter):
    from napari_sam2.engine.errors import Cancelled

    seg = sam2_random_segmenter.set_image(_image() + 7)  # content no other test encodes
    before = seg.stats.encodes
    n_blocks = len(seg.backend.loaded.model.image_encoder.trunk.blocks)
    cancel = _CancelAfter(3)  # 1 check before the encode + 2 blocks run, then stop
    with pytest.raises(Cancelled):
        seg.predict(points=[[20, 80]], point_labels=[1], cancel=cancel)
    assert cancel.checks == 4 < n_blocks  # stopped inside the encoder, not after it
    assert seg.stats.encodes == before and not seg.is_encoded(())
    # the predictor is left clean: the next call encodes and predicts normally
    pred = seg.predict(points=[[20, 80]], point_labels=[1])
    _check(pred[0], 3)
    assert seg.stats.encodes == before + 1
