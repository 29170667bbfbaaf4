"""Batched encodes (CPU and GPU), batched precompute, and the compile wiring."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

from napari_sam2.engine import Segmenter
from napari_sam2.engine.errors import Cancelled, ImageError
from napari_sam2.engine.runtime import speed as S
from napari_sam2.engine.runtime.precision import click_grid, compare_embeddings

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def stack(shared_data):
    """Three different real planes (nuclei sample, flipped, cropped) of one shape."""
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")[:200, :240]
    return np.stack([img, img[::-1].copy(), img[:, ::-1].copy()])


def _same(a, b, atol=1e-4):
    assert a["orig_hw"] == b["orig_hw"]
    for x, y in zip(
        [a["image_embed"], *a["high_res_feats"]],
        [b["image_embed"], *b["high_res_feats"]],
        strict=True,
    ):
        assert x.shape == y.shape and x.dtype == y.dtype
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4)


def test_encode_batch_equals_single_encodes_on_cpu(sam2_random_segmenter, stack):
    seg = sam2_random_segmenter
    seg.set_image(stack)
    images = [seg.source.sam_image((z,)) for z in range(3)]
    singles = [seg.backend.encode(im) for im in images]
    batch = seg.backend.encode_batch(images)
    assert len(batch) == 3
    for one, many in zip(singles, batch, strict=True):
        _same(one, many)
        # each result owns its memory (not a view into the batch)
        assert many["image_embed"].untyped_storage().nbytes() == many["image_embed"].nbytes
    # and the masks are the same
    pooled, worst = compare_embeddings(
        seg.backend, singles[1], batch[1], stack.shape[1:], click_grid(stack.shape[1:], 3)
    )
    assert worst == 1.0
    with pytest.raises(ImageError):
        seg.backend.encode_batch([images[0], images[0][..., :2]])


def test_encode_batch_cancel(sam2_random_segmenter, stack):
    seg = sam2_random_segmenter
    seg.set_image(stack)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        seg.backend.encode_batch([seg.source.sam_image((0,))], cancel=ev)


def test_precompute_batched_fills_the_caches_once(sam2_random_checkpoint, stack, tmp_path):
    seg = Segmenter(
        "tiny",
        checkpoint=sam2_random_checkpoint,
        device="cpu",
        image_size=256,
        disk_cache=tmp_path,
    )
    seg.set_image(stack)
    seen = []
    assert seg.precompute(batch_size=2, progress=lambda d, t: seen.append((d, t))) == 3
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert seg.stats.encodes == 3 and len(seg.cache) == 3
    assert all(seg.is_encoded((z,)) for z in range(3))
    # same embedding as a single encode of that plane (through the cache's fp16 storage)
    single = Segmenter("tiny", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256)
    single.set_image(stack)
    _same(single.embedding((2,)), seg.embedding((2,)), atol=2e-3)
    assert seg.stats.encodes == 3  # the revisit was a hit
    # again: nothing to encode; a new segmenter on the same disk cache: nothing either
    seg.precompute(batch_size=3)
    assert seg.stats.encodes == 3
    other = Segmenter(
        "tiny",
        checkpoint=sam2_random_checkpoint,
        device="cpu",
        image_size=256,
        disk_cache=tmp_path,
    )
    other.set_image(stack)
    other.precompute(batch_size=2)
    assert (other.stats.encodes, other.stats.disk_hits) == (0, 3)


def test_precompute_batched_cancel_and_duplicates(sam2_random_segmenter, stack):
    seg = sam2_random_segmenter
    seg.cache.clear()
    seg.set_image(np.stack([stack[0], stack[0], stack[1]]))  # planes 0 and 1 are equal
    before = seg.stats.encodes
    seg.precompute(batch_size=3)
    assert seg.stats.encodes - before == 2
    ev = threading.Event()
    ev.set()
    seg.cache.clear()
    with pytest.raises(Cancelled):
        seg.precompute(batch_size=2, cancel=ev)
    assert len(seg.cache) == 0


def test_default_batch_size(sam2_random_segmenter, classical_segmenter):
    assert S.default_batch_size(sam2_random_segmenter.backend) == 1  # CPU
    assert S.default_batch_size(classical_segmenter.backend) == 1  # no encode_batch

    class Cuda:
        device = torch.device("cuda")

        def encode_batch(self, images):  # pragma: no cover - never called
            return []

    assert S.default_batch_size(Cuda()) == S.DEFAULT_GPU_BATCH


def test_compile_encoder_wiring_without_compiling(sam2_random_checkpoint, stack, monkeypatch):
    """torch.compile replaced by a stand-in (tests never compile) that behaves like a CUDA
    graph: it returns the same output buffers on every call and cannot run the per-block
    cancel hooks.  After compile_encoder every encode goes through it once (the warm-up
    included) without the hooks, results are unchanged and survive the next encode
    (owned), a second call compiles nothing, and cancel is still honoured between planes."""
    runs = []

    def fake_compile(fn, **kw):
        buffers = {}

        def graph(sample):
            runs.append(sample.shape)
            out = fn(sample)
            for k, v in out.items():  # CUDA graphs: outputs live in reused buffers
                vs = v if isinstance(v, list) else [v]
                old = buffers.setdefault(k, [t.clone() for t in vs])
                for o, t in zip(old, vs, strict=True):
                    o.copy_(t)
            return {k: list(b) if isinstance(out[k], list) else b[0] for k, b in buffers.items()}

        return graph

    monkeypatch.setattr(torch, "compile", fake_compile)
    seg = Segmenter("tiny", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256)
    seg.set_image(stack)
    images = [seg.source.sam_image((z,)) for z in range(2)]
    eager = [seg.backend.encode(im) for im in images]
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):  # eager: the block hooks stop an encode
        seg.backend.encode(images[0], cancel=cancelled)
    assert runs == []

    S.compile_encoder(seg.backend)
    assert len(runs) == 1  # the warm-up encode ran the compiled graph
    assert S.compile_encoder(seg.backend) == 0.0 and len(runs) == 1  # once only

    first = seg.backend.encode(images[0], cancel=cancelled)  # no hook runs inside a graph
    second = seg.backend.encode(images[1])
    assert len(runs) == 3
    _same(eager[0], first, atol=0)  # not overwritten by the second run's buffers
    _same(eager[1], second, atol=0)
    assert not torch.equal(first["image_embed"], second["image_embed"])
    with pytest.raises(Cancelled):  # still honoured, between planes
        seg.embedding((1,), cancel=cancelled)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_encode_batch_matches_single(sam2_random_checkpoint, stack):
    seg = Segmenter("tiny", checkpoint=sam2_random_checkpoint, device="cuda", image_size=256)
    seg.set_image(stack)
    images = [seg.source.sam_image((z,)) for z in range(3)]
    singles = [seg.backend.encode(im) for im in images]
    for one, many in zip(singles, seg.backend.encode_batch(images), strict=True):
        _same(one, many, atol=5e-2 if seg.backend.precision == "bf16" else 1e-3)
    assert S.default_batch_size(seg.backend) == S.DEFAULT_GPU_BATCH
    seg.precompute()
    assert seg.stats.encodes == 3


@cuda
@pytest.mark.slow
def test_cuda_compiled_encoder_with_cuda_graphs(sam2_random_checkpoint, stack):
    seg = Segmenter(
        "tiny", checkpoint=sam2_random_checkpoint, device="cuda", image_size=256, precision="bf16"
    )
    seg.set_image(stack)
    eager = [seg.backend.encode(seg.source.sam_image((z,))) for z in range(3)]
    S.compile_encoder(seg.backend)  # reduce-overhead: CUDA graphs at the fixed size
    compiled = [seg.backend.encode(seg.source.sam_image((z,))) for z in range(3)]
    for a, b in zip(eager, compiled, strict=True):  # earlier outputs survive later graph replays
        _same(a, b, atol=0.1)
        pooled, _ = compare_embeddings(seg.backend, a, b, stack.shape[1:])
        assert pooled >= 0.995


def test_int8_quantisation_is_opt_in_and_keyed(sam2_random_checkpoint, shared_data):
    """Opt-in int8 (random weights, 256 px): its own cache key, masks close to fp32."""
    image = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    ref = Segmenter("tiny", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256)
    q = Segmenter("tiny", checkpoint=sam2_random_checkpoint, device="cpu", image_size=256)
    assert q.backend.cache_key() == ref.backend.cache_key()
    S.quantize_encoder_int8(q.backend)
    S.quantize_encoder_int8(q.backend)  # once only
    assert q.backend.precision == "int8" and q.backend.describe()["precision"] == "int8"
    assert q.backend.cache_key() != ref.backend.cache_key()
    linear = q.backend.loaded.model.image_encoder.trunk.blocks[0].attn.qkv
    assert "quantized" in type(linear).__module__
    ref.set_image(image)
    q.set_image(image)
    e32, e8 = ref.embedding(), q.embedding()
    assert not torch.equal(e32["image_embed"], e8["image_embed"])
    pooled, worst = compare_embeddings(ref.backend, e32, e8, image.shape)
    assert pooled >= 0.99, (pooled, worst)
