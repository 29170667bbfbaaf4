"""Encoder sections of ``run_all.py``: matmul floor, FLOPs, encode vs stock, precision,
optional encoder variants (compile, channels-last, int8, batching).  Not a test module."""

from __future__ import annotations

import statistics
import time

import numpy as np


def timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(dtype_name: str, n: int, repeats: int = 5) -> float:
    """GFLOP/s of an ``n × n`` matmul in this dtype on this CPU (the arithmetic floor)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    times = []
    for _ in range(max(1, repeats)):  # the best: what the CPU can do when it gets the cores
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9


def encoder_gflop(model, image_size: int) -> float:
    """FLOPs of one image-encoder pass (``forward_image``) from torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as fcm, torch.inference_mode():
        model.forward_image(x)
    return fcm.get_total_flops() / 1e9


def fresh_images(img, n):
    """``n`` float32 SAM inputs of different content (so no cache can answer)."""
    from napari_sam2.engine.planes import PlaneSource

    src = PlaneSource(img)
    base = src.sam_image(())
    return [np.clip(base + 1e-3 * k, 0, 1).astype(np.float32) for k in range(n)]


def stock_predictor(backend):
    """sam2's ``SAM2ImagePredictor`` on a fresh, untrimmed build of ``backend``'s model with
    the same weights (sam2's code exactly as shipped)."""
    import warnings

    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from napari_sam2.engine.model.load import build_model

    lm = backend.loaded
    model = build_model(lm.spec, image_size=backend.image_size)
    model.load_state_dict(lm.model.state_dict())
    model = model.to(backend.device).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = SAM2ImagePredictor(model)
    s = backend.image_size
    stock._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return stock


def encode_vs_stock(backend, img, repeats: int) -> dict:
    """Our encode (cache missed: new content) vs the stock ``SAM2ImagePredictor.set_image``
    on an untrimmed copy of the same model (same weights, sam2's code exactly as shipped),
    interleaved so load changes hit both alike."""
    import torch

    stock = stock_predictor(backend)
    images = fresh_images(img, 2 * repeats + 2)
    ours, theirs = [], []
    backend.encode(images[0])  # warm-up of both paths
    with torch.inference_mode():
        stock.set_image(images[1])
    for k in range(repeats):
        t0 = time.perf_counter()
        backend.encode(images[2 + 2 * k])
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.inference_mode():
            stock.set_image(images[3 + 2 * k])
        theirs.append(time.perf_counter() - t0)
    return {
        "ours_s": statistics.median(ours),
        "stock_s": statistics.median(theirs),
        "ours_min_s": min(ours),
        "stock_min_s": min(theirs),
    }


def precision_compare(backend, img, repeats: int, native: bool) -> dict:
    """fp32 vs bf16 autocast encode time and mask agreement (16 clicks).  Without native
    bf16 one bf16 encode only (it is emulated and slow)."""
    from napari_sam2.engine.planes import PlaneSource
    from napari_sam2.engine.runtime.precision import compare_embeddings

    image = PlaneSource(img).sam_image(())
    saved = backend.precision
    try:
        backend.precision = "fp32"
        t32 = timed(lambda: backend.encode(image), repeats)
        e32 = backend.encode(image)
        backend.precision = "bf16"
        if native:
            t16 = timed(lambda: backend.encode(image), repeats)
            e16 = backend.encode(image)
        else:  # emulated: one encode, its first (warm-up included)
            t0 = time.perf_counter()
            e16 = backend.encode(image)
            t16 = time.perf_counter() - t0
    finally:
        backend.precision = saved
    pooled, worst = compare_embeddings(
        backend, e32, e16, image.shape[:2], precisions=("fp32", "bf16")
    )
    return {"fp32_s": t32, "bf16_s": t16, "agreement": pooled, "worst": worst}


def cache_dtype_compare(backend, img) -> dict:
    """Masks from fp16/bf16-stored embeddings vs float32, bytes per entry, unpack cost."""
    from napari_sam2.engine.cache.memory import EmbeddingCache, _unpack, nbytes_of
    from napari_sam2.engine.planes import PlaneSource
    from napari_sam2.engine.runtime.precision import compare_embeddings

    image = PlaneSource(img).sam_image(())
    emb = backend.encode(image)
    out = {"fp32_bytes": nbytes_of({k: emb[k] for k in ("image_embed", "high_res_feats")})}
    for store in ("fp16", "bf16"):
        c = EmbeddingCache(store_dtype=store)
        got = c.put("k", emb)
        out[f"{store}_bytes"] = c.nbytes - c._hot[2]  # the 16-bit entry alone
        stored = c._items["k"][0]
        out[f"{store}_restore_ms"] = 1e3 * timed(lambda s=stored: _unpack(s), 5)
        out[f"{store}_agreement"], out[f"{store}_worst"] = compare_embeddings(
            backend, emb, got, image.shape[:2]
        )
        out[f"{store}_get_ms"] = 1e3 * timed(lambda c=c: c.get("k"), 5)
    return out


def interleaved(fa, fb, repeats: int) -> tuple[float, float]:
    """Median times of ``fa`` and ``fb`` run alternately (a busy machine hits both alike)."""
    fa()
    fb()
    ta, tb = [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fa()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fb()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def compile_gain(make_backend, img, repeats: int) -> dict:
    from napari_sam2.engine.runtime.speed import compile_encoder

    eager, comp = make_backend(), make_backend()
    cost = compile_encoder(comp, warmup=True)
    [image] = fresh_images(img, 1)
    te, tc = interleaved(lambda: eager.encode(image), lambda: comp.encode(image), repeats)
    return {"eager_s": te, "compiled_s": tc, "compile_cost_s": cost}


def channels_last_gain(make_backend, img, repeats: int) -> dict:
    import torch

    base, cl = make_backend(), make_backend()
    cl.loaded.model.to(memory_format=torch.channels_last)
    [image] = fresh_images(img, 1)
    tb, tc = interleaved(lambda: base.encode(image), lambda: cl.encode(image), repeats)
    return {"contiguous_s": tb, "channels_last_s": tc}


def int8_gain(make_backend, img, repeats: int) -> dict:
    """Dynamic int8 quantisation of the trunk's Linear layers vs fp32, and mask agreement."""
    from napari_sam2.engine.runtime.precision import compare_embeddings
    from napari_sam2.engine.runtime.speed import quantize_encoder_int8

    base, q = make_backend(), make_backend()
    quantize_encoder_int8(q)
    [image] = fresh_images(img, 1)
    tb, tq = interleaved(lambda: base.encode(image), lambda: q.encode(image), repeats)
    pooled, worst = compare_embeddings(base, base.encode(image), q.encode(image), image.shape[:2])
    return {"fp32_s": tb, "int8_s": tq, "agreement": pooled, "worst": worst}


def batch_gain(backend, img, batch: int, repeats: int) -> dict:
    images = fresh_images(img, batch)
    ts, tb = interleaved(
        lambda: [backend.encode(im) for im in images],
        lambda: backend.encode_batch(images),
        repeats,
    )
    return {"single_s": ts / batch, "batched_s": tb / batch, "batch": batch}
