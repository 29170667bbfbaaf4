"""The in-memory embedding cache in half precision: bytes counted as stored, float32 given
back, and masks from fp16-stored embeddings agree with float32 ones (≥ 99.5 % of pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.engine import EmbeddingCache, Segmenter
from napari_sam2.engine.runtime.precision import click_grid, compare_embeddings

torch = pytest.importorskip("torch")


def _emb():
    g = torch.Generator().manual_seed(0)
    return {
        "image_embed": torch.randn(1, 4, 8, 8, generator=g),
        "high_res_feats": [
            torch.randn(1, 2, 16, 16, generator=g),
            torch.ones(3, dtype=torch.int64),
        ],
        "orig_hw": (10, 12),
        "encode_s": 1.5,
    }


@pytest.mark.parametrize(("store", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_storage_counts_half_bytes_and_restores_float32(store, dtype):
    c = EmbeddingCache(max_bytes=10_000, store_dtype=store)
    emb = _emb()
    got_put = c.put("k", emb)
    # 256 + 512 float32 values stored in 2 bytes each, the int64 tensor as is, plus the
    # restored float32 copy of the most recently used entry
    assert c.nbytes == (256 + 512) * 2 + 3 * 8 + (256 + 512) * 4
    got = c.get("k")
    assert got["image_embed"].dtype == torch.float32
    assert got["high_res_feats"][0].dtype == torch.float32
    assert got["high_res_feats"][1].dtype == torch.int64
    assert torch.equal(got["image_embed"], emb["image_embed"].to(dtype).float())
    assert not torch.equal(got["image_embed"], emb["image_embed"])  # it was rounded
    assert got["orig_hw"] == (10, 12) and got["encode_s"] == 1.5
    # what put returns is what get gives back: a first use and a revisit see the same numbers
    assert torch.equal(got_put["image_embed"], got["image_embed"])
    assert torch.equal(got_put["high_res_feats"][0], got["high_res_feats"][0])


def test_half_storage_budget_holds_more_entries():
    emb = {"image_embed": torch.zeros(1000)}  # 4000 bytes as float32, 2000 in fp16
    full = EmbeddingCache(12000, store_dtype=None)
    half = EmbeddingCache(12000, store_dtype="fp16")
    for i in range(6):
        full.put(i, dict(emb))
        half.put(i, dict(emb))
    assert (len(full), full.nbytes, full.stats.evictions) == (3, 12000, 3)
    # 4 stored entries of 2000 bytes + the restored copy of the last one (4000)
    assert (len(half), half.nbytes, half.stats.evictions) == (4, 12000, 2)
    assert half._hot[0] == 5
    got = half.get(2)  # another entry becomes the restored one: still within budget
    assert half._hot[0] == 2 and half.get(2) is got and half.nbytes == 12000
    assert len(half) == 4 and half.stats.hits == 2
    half.clear()
    assert half.nbytes == 0 and half._hot is None


def test_no_storage_conversion_when_off_or_not_float32():
    c = EmbeddingCache(10_000, store_dtype=None)
    emb = _emb()
    assert c.put("k", emb) is emb and c.get("k") is emb
    h = EmbeddingCache(10_000)  # fp16 by default
    blob = np.zeros(10, np.float32)  # numpy (classical backend): stored as given
    assert h.put("n", blob) is blob and h.get("n") is blob
    t16 = torch.zeros(4, dtype=torch.bfloat16)  # already 16-bit (CUDA bf16): as given
    assert h.get("t") is None and h.put("t", t16) is t16 and h.get("t") is t16
    big = torch.tensor([1.0, 70000.0])  # fp16 would overflow: stays float32
    h.put("big", big)
    assert torch.equal(h.get("big"), big)
    with pytest.raises(ValueError, match="store_dtype"):
        EmbeddingCache(10, store_dtype="int8")


def test_fp16_stored_embedding_masks_agree(sam2_random_segmenter, shared_data):
    """Random-weight SAM 2.1 tiny (256 px) on a real image: 16 clicks predicted from the
    float32 embedding and from its fp16-stored copy agree on ≥ 99.5 % of the pixels."""
    seg = sam2_random_segmenter
    image = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    seg.set_image(image)
    emb = seg.backend.encode(seg.source.sam_image(()))
    stored = EmbeddingCache(store_dtype="fp16").put("k", emb)
    assert stored["image_embed"].dtype == torch.float32
    assert not torch.equal(stored["image_embed"], emb["image_embed"])
    pooled, worst = compare_embeddings(
        seg.backend, emb, stored, image.shape, click_grid(image.shape)
    )
    assert pooled >= 0.995, (pooled, worst)
    assert worst >= 0.99, (pooled, worst)


def test_segmenter_first_use_equals_revisit(sam2_random_checkpoint, shared_data):
    image = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    auto = Segmenter("tiny", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256)
    assert auto.cache.store_dtype is None  # CPU default: exact parity with sam2's predictor
    seg = Segmenter(
        "tiny", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256, cache_dtype="fp16"
    )
    assert seg.cache.store_dtype == "fp16"
    seg.set_image(image)
    [first] = seg.predict(points=[(100, 120)])
    [again] = seg.predict(points=[(100, 120)])
    assert seg.stats.encodes == 1 and seg.stats.hits == 1
    np.testing.assert_array_equal(first.candidates, again.candidates)
    np.testing.assert_array_equal(first.scores, again.scores)
    # the entry is held in half, plus the float32 copy of the plane in use
    emb = seg.embedding()
    f32 = sum(t.numel() for t in [emb["image_embed"], *emb["high_res_feats"]]) * 4
    assert seg.cache.nbytes == f32 // 2 + f32
    off = Segmenter(
        "tiny", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256, cache_dtype=None
    )
    off.set_image(image)
    off.embedding()
    assert off.cache.nbytes == f32
