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
    t = timed(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


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


def encode_vs_stock(backend, img, repeats: int) -> dict:
    """Our encode (cache missed: new content) vs the stock ``SAM2ImagePredictor.set_image``
    on the same model object, interleaved so load changes hit both alike."""
    import warnings

    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = SAM2ImagePredictor(backend.loaded.model)
    s = backend.image_size
    stock._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
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
    return {"ours_s": statistics.median(ours), "stock_s": statistics.median(theirs)}


def precision_compare(backend, img, repeats: int, native: bool) -> dict:
    """fp32 vs bf16 autocast encode time and mask agreement (16 clicks).  Without native
    bf16 one bf16 encode only (it is emulated and slow)."""
    from napari_sam2.engine.planes import PlaneSource
    from napari_sam2.engine.precision import compare_embeddings

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
    from napari_sam2.engine.cache import EmbeddingCache, nbytes_of
    from napari_sam2.engine.planes import PlaneSource
    from napari_sam2.engine.precision import compare_embeddings

    image = PlaneSource(img).sam_image(())
    emb = backend.encode(image)
    out = {"fp32_bytes": nbytes_of({k: emb[k] for k in ("image_embed", "high_res_feats")})}
    for store in ("fp16", "bf16"):
        c = EmbeddingCache(store_dtype=store)
        got = c.put("k", emb)
        out[f"{store}_bytes"] = c.nbytes
        out[f"{store}_agreement"], out[f"{store}_worst"] = compare_embeddings(
            backend, emb, got, image.shape[:2]
        )
        out[f"{store}_get_ms"] = 1e3 * timed(lambda c=c: c.get("k"), 5)
    return out


def compile_gain(backend, img, repeats: int) -> dict:
    from napari_sam2.engine.speed import compile_encoder

    images = fresh_images(img, repeats + 2)
    eager = timed(lambda: backend.encode(images[0]), repeats)
    cost = compile_encoder(backend, warmup=True)
    comp = timed(lambda: backend.encode(images[1]), repeats)
    return {"eager_s": eager, "compiled_s": comp, "compile_cost_s": cost}


def channels_last_gain(backend, img, repeats: int) -> dict:
    import torch

    images = fresh_images(img, 2)
    model = backend.loaded.model
    base = timed(lambda: backend.encode(images[0]), repeats)
    model.to(memory_format=torch.channels_last)
    try:
        cl = timed(lambda: backend.encode(images[1]), repeats)
    finally:
        model.to(memory_format=torch.contiguous_format)
    return {"contiguous_s": base, "channels_last_s": cl}


def int8_gain(backend, img, repeats: int) -> dict:
    """Dynamic int8 quantisation of the trunk's Linear layers (in place, run last)."""
    import torch

    from napari_sam2.engine.planes import PlaneSource
    from napari_sam2.engine.precision import compare_embeddings

    image = PlaneSource(img).sam_image(())
    base = timed(lambda: backend.encode(image), repeats)
    ref = backend.encode(image)
    trunk = backend.loaded.model.image_encoder.trunk
    torch.ao.quantization.quantize_dynamic(
        trunk, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
    )
    q = timed(lambda: backend.encode(image), repeats)
    got = backend.encode(image)
    pooled, worst = compare_embeddings(backend, ref, got, image.shape[:2])
    return {"fp32_s": base, "int8_s": q, "agreement": pooled, "worst": worst}


def batch_gain(backend, img, batch: int) -> dict:
    images = fresh_images(img, 2 * batch + 1)
    backend.encode(images[-1])
    t0 = time.perf_counter()
    for im in images[:batch]:
        backend.encode(im)
    single = (time.perf_counter() - t0) / batch
    t0 = time.perf_counter()
    backend.encode_batch(images[batch : 2 * batch])
    batched = (time.perf_counter() - t0) / batch
    return {"single_s": single, "batched_s": batched, "batch": batch}
