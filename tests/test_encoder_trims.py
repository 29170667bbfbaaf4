"""Exact encoder trims (``engine/runtime/encoder_trims.py``): the same numbers as sam2's own code.

The real SAM 2.1 tiny architecture with random weights (input 256).  Every comparison is
``torch.equal``: the trims must not move a single bit, so our masks stay those of
``SAM2ImagePredictor``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from conftest import TEST_IMAGE_SIZE  # noqa: E402
from napari_sam2.engine.runtime.encoder_trims import trim_encoder, untrim_encoder  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def model(sam2_random_checkpoint):
    from sam2.build_sam import build_sam2

    from napari_sam2.engine.model.registry import get_spec

    m = build_sam2(
        get_spec("tiny").config,
        str(sam2_random_checkpoint),
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={TEST_IMAGE_SIZE}"],
    )
    return m.eval()


def _image(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, generator=g)


def _forward(model, x) -> dict:
    with torch.inference_mode():
        out = model.forward_image(x)
    return {
        "vision_features": out["vision_features"].clone(),
        "backbone_fpn": [t.clone() for t in out["backbone_fpn"]],
        "vision_pos_enc": [t.clone() for t in out["vision_pos_enc"]],
    }


def _assert_equal(a: dict, b: dict) -> None:
    assert torch.equal(a["vision_features"], b["vision_features"])
    assert len(a["backbone_fpn"]) == len(b["backbone_fpn"]) == 3
    for key in ("backbone_fpn", "vision_pos_enc"):
        for ta, tb in zip(a[key], b[key], strict=True):
            assert ta.shape == tb.shape
            assert torch.equal(ta, tb), key


def test_trimmed_forward_is_bit_identical(model):
    untrim_encoder(model)
    x1, x2 = _image(1), _image(2)
    plain = [_forward(model, x1), _forward(model, x2)]
    assert trim_encoder(model) == ("pos_embed_cache", "neck_pos_expand")
    try:
        for _ in range(2):  # the first call fills the caches, the second uses them
            _assert_equal(_forward(model, x1), plain[0])
            _assert_equal(_forward(model, x2), plain[1])
    finally:
        untrim_encoder(model)


def test_neck_position_encoding_is_not_copied(model):
    trim_encoder(model)
    try:
        with torch.inference_mode():
            pos = model.forward_image(_image(3))["vision_pos_enc"]
        cache = model.image_encoder.neck.position_encoding.cache
        for p in pos:  # a view of sam2's own cache, not a per-encode copy
            key = tuple(p.shape[-2:])
            assert p.data_ptr() == cache[key].data_ptr()
    finally:
        untrim_encoder(model)


def test_trim_is_idempotent_and_untrim_restores_sam2s_methods(model):
    trunk = model.image_encoder.trunk
    pe = model.image_encoder.neck.position_encoding
    assert trim_encoder(model) == trim_encoder(model)
    assert "_get_pos_embed" in vars(trunk) and "_pe" in vars(pe)
    untrim_encoder(model)
    assert "_get_pos_embed" not in vars(trunk) and "_pe" not in vars(pe)
    assert not hasattr(model.image_encoder, "_napari_sam2_trims")
    untrim_encoder(model)  # a second undo is harmless


def test_pos_embed_cache_follows_weight_changes(model):
    trunk = model.image_encoder.trunk
    x = _image(4)
    saved = {k: v.clone() for k, v in model.state_dict().items() if "pos_embed" in k}
    trim_encoder(model)
    try:
        before = _forward(model, x)
        with torch.no_grad():  # what load_state_dict / fine-tuning does: in place
            trunk.pos_embed.add_(0.5)
        after = _forward(model, x)
        assert not torch.equal(after["vision_features"], before["vision_features"])
        untrim_encoder(model)
        _assert_equal(after, _forward(model, x))  # = sam2's code on the new weights
    finally:
        model.load_state_dict(saved, strict=False)
        untrim_encoder(model)


def test_pos_embed_is_not_cached_when_training(model):
    trunk = model.image_encoder.trunk
    trim_encoder(model)
    try:
        with torch.inference_mode():
            cached = trunk._get_pos_embed((64, 64))
        with torch.enable_grad():
            fresh = trunk._get_pos_embed((64, 64))
        assert fresh is not cached
        assert fresh.requires_grad  # gradients reach pos_embed while training
        assert torch.equal(fresh.detach(), cached)
    finally:
        untrim_encoder(model)


def test_backend_trims_and_matches_stock_predictor(sam2_random_segmenter, model):
    """Our embedding (trimmed model) = stock SAM2ImagePredictor on an untrimmed model."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    enc = sam2_random_segmenter.backend.loaded.model.image_encoder
    assert enc._napari_sam2_trims == ("pos_embed_cache", "neck_pos_expand")
    untrim_encoder(model)
    rng = np.random.default_rng(5)
    image = rng.random((180, 240, 3), dtype=np.float32)
    ours = sam2_random_segmenter.backend.encode(image)
    pred = SAM2ImagePredictor(model)
    s = TEST_IMAGE_SIZE
    pred._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    with torch.inference_mode():
        pred.set_image(image)
    ref = pred._features
    assert torch.equal(ours["image_embed"], ref["image_embed"])
    for a, b in zip(ours["high_res_feats"], ref["high_res_feats"], strict=True):
        assert torch.equal(a, b)
