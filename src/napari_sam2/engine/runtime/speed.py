"""Encoder speed: batched precompute, opt-in ``torch.compile`` / CUDA graphs.

What was measured and kept or left out is in docs/performance.md ("Encoder speed"): sam2
1.1's Hiera already uses fused attention (``F.scaled_dot_product_attention`` over its
windows); channels-last and int8 dynamic quantisation did not pay on the CPU; compiling
the encoder is opt-in (:func:`compile_encoder`) because its one-off cost is minutes on a
small CPU and the gain must be measured per machine (``benchmarks/run_all.py --compile``).
"""

from __future__ import annotations

import time

import numpy as np

from ..cancel import check_cancel
from .encoder_trims import untrim_encoder

DEFAULT_GPU_BATCH = 4


def default_batch_size(backend) -> int:
    """Planes per encoder call in :meth:`Segmenter.precompute`: several on a GPU (which a
    single 1024² plane does not fill), one elsewhere (a CPU gains nothing from batching
    and the batch's activations cost memory)."""
    if not hasattr(backend, "encode_batch"):
        return 1
    dev = getattr(backend, "device", None)
    return DEFAULT_GPU_BATCH if getattr(dev, "type", str(dev)) == "cuda" else 1


def precompute(segmenter, planes, batch_size=None, *, cancel=None, progress=None) -> int:
    """:meth:`Segmenter.precompute`: one plane per :meth:`Segmenter.embedding` call, or
    ``batch_size`` planes per encoder call (default :func:`default_batch_size`)."""
    if batch_size is None:
        batch_size = default_batch_size(segmenter.backend)
    if batch_size > 1:
        return precompute_batched(segmenter, planes, batch_size, cancel=cancel, progress=progress)
    for i, plane in enumerate(planes):
        check_cancel(cancel)
        segmenter.embedding(plane, cancel=cancel)
        if progress is not None:
            progress(i + 1, len(planes))
    return len(planes)


def precompute_batched(segmenter, planes, batch_size: int, *, cancel=None, progress=None) -> int:
    """:meth:`Segmenter.precompute` with ``batch_size`` planes per encoder call.

    Planes already in the memory or disk cache are not encoded; every new embedding goes
    into both caches exactly as :meth:`Segmenter.embedding` would put it.
    """
    src = segmenter.require_source()
    backend = segmenter.backend
    stats = segmenter.cache.stats
    planes = list(planes)
    done = 0
    for start in range(0, len(planes), max(1, batch_size)):
        chunk = planes[start : start + batch_size]
        todo = []
        for plane in chunk:
            check_cancel(cancel)
            index = src.check_index(plane)
            raw = src.raw_plane(index)
            key = (src.plane_key(index, raw=raw), backend.cache_key())
            if key in segmenter.cache or any(key == k for k, _ in todo):
                continue
            if segmenter.disk_cache is not None:
                emb = segmenter.disk_cache.get(key, backend, stats)
                if emb is not None:
                    segmenter.cache.put(key, emb)
                    continue
            todo.append((key, src.to_sam_image(raw)))
        if todo:
            check_cancel(cancel)
            t0 = time.perf_counter()
            embs = backend.encode_batch([image for _, image in todo], cancel=cancel)
            stats.encodes += len(todo)
            stats.last_encode_s = (time.perf_counter() - t0) / len(todo)
            for (key, _), emb in zip(todo, embs, strict=True):
                emb = segmenter.cache.put(key, emb)
                if segmenter.disk_cache is not None:
                    segmenter.disk_cache.put(key, emb, backend)
        for _ in chunk:
            done += 1
            if progress is not None:
                progress(done, len(planes))
    return len(planes)


def compile_encoder(backend, *, mode: str | None = None, warmup: bool = True):
    """Compile the SAM 2 image encoder with ``torch.compile`` (inductor), in place.

    ``mode``: default ``"reduce-overhead"`` (CUDA graphs) on CUDA, the default mode on
    the CPU.  The input size is fixed (``image_size``), so nothing recompiles.  The
    one-off cost (minutes on a small CPU; inductor caches kernels on disk for the next
    process) is paid here when ``warmup``: call it from a background thread at load.
    A compiled encoder is cancelled only between planes (the per-block cancel hooks
    cannot run inside a compiled graph).  Returns the seconds spent.
    """
    import torch

    model = backend.loaded.model
    enc = model.image_encoder
    if getattr(enc, "_napari_sam2_compiled", False):
        return 0.0
    t0 = time.perf_counter()
    backend.remove_cancel_hooks()
    untrim_encoder(model)  # inductor traces sam2's own functions (it caches constants itself)
    cuda = backend.device.type == "cuda"
    if mode is None and cuda:
        mode = "reduce-overhead"
    compiled = torch.compile(enc.forward, mode=mode, dynamic=False)

    def forward(sample):
        if cuda and mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        out = compiled(sample)
        # CUDA graphs reuse their output buffers on the next run: own what is returned
        return {
            k: [t.clone() for t in v] if isinstance(v, list) else v.clone() for k, v in out.items()
        }

    enc.forward = forward
    enc._napari_sam2_compiled = True
    if warmup:
        s = backend.image_size
        backend.encode(np.zeros((s, s, 3), np.float32))
    return time.perf_counter() - t0


def quantize_encoder_int8(backend) -> None:
    """Opt-in: dynamic int8 quantisation of the image encoder trunk's ``nn.Linear`` layers
    (CPU only), in place.  The backend's precision becomes ``"int8"`` so its embeddings
    never share cache entries with fp32 ones.  Check the masks on your data first
    (:func:`napari_sam2.engine.runtime.precision.compare_embeddings`): see docs/performance.md."""
    import torch

    if backend.device.type != "cpu":
        raise ValueError("int8 dynamic quantisation runs on the CPU only.")
    if backend.precision == "int8":
        return
    trunk = backend.loaded.model.image_encoder.trunk
    torch.ao.quantization.quantize_dynamic(
        trunk, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
    )
    backend.precision = "int8"
