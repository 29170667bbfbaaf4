"""All performance figures of issue 13 in one run, as ratios against baselines measured in
the same run (docs/performance.md).

SAM 2.1 with random weights (seeded; timings equal real weights: same arithmetic) on the
shipped 2-D nuclei sample.  Sections:

1. matmul floor: fp32 and bf16 GFLOP/s of a plain matmul; encoder GFLOP (flop counter);
2. encode per model size vs the stock ``SAM2ImagePredictor.set_image`` (an untrimmed model,
   same process) and vs the floor; 2b. as shipped vs stock sam2 without huge pages
   (``bench_encode_ab.py``, separate processes; ``--no-ab`` skips it);
3. fp32 vs bf16 autocast: time and mask agreement (16 clicks); the ``precision="auto"``
   verdict for this CPU;
4. in-memory cache dtype: mask agreement of fp16/bf16-stored embeddings, bytes, unpack cost;
5. click → labels with a cached embedding on a 1×S² plane and on a 200×S×S dask volume;
6. encodes on revisits (expected 0) and a disk-cache reopen (expected 0 encodes);
7. prefetch (``benchmarks/bench_prefetch.py``'s ``run()``, when present);
8. opt-in: ``--compile``, ``--channels-last``, ``--int8``, ``--batch N``; CUDA when present.

    python benchmarks/run_all.py            # ~5 min on a 2-core CPU
    python benchmarks/run_all.py --quick    # input 512, fewer repeats, 20-plane volume
    python benchmarks/run_all.py --sizes tiny small base_plus large --compile --int8
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_sam2.engine.runtime.allocator import prefer_huge_pages

prefer_huge_pages()  # before torch, as a model load does when shipped

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _encode_sections as E  # noqa: E402
from _common import environment, sample_image  # noqa: E402

SIZES = ("tiny", "small", "base_plus", "large")


def _save_random(size: str, folder: Path, image_size: int) -> Path:
    """Random weights saved as an official-looking checkpoint (so the disk cache, which
    needs a checkpoint hash, works as for real weights)."""
    import torch

    from napari_sam2.engine.model.load import build_model
    from napari_sam2.engine.model.registry import get_spec

    spec = get_spec(size)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(spec, image_size=image_size)
    path = folder / spec.checkpoint_name
    torch.save({"model": model.state_dict()}, path)
    return path


def _segmenter(ckpt, size, image_size, **kw):
    from napari_sam2 import Segmenter

    return Segmenter(
        size,
        checkpoint=ckpt,
        backend="sam2",
        device=kw.pop("device", "cpu"),
        precision=kw.pop("precision", "fp32"),
        image_size=image_size,
        **kw,
    )


def _lazy_volume(n: int, s: int, img):
    """An (n, s, s) uint16 dask array whose planes are computed on access."""
    import dask.array as da

    base = np.zeros((s, s), np.uint16)
    h, w = min(s, img.shape[0]), min(s, img.shape[1])
    base[:h, :w] = img[:h, :w]

    def plane(block_id=None):
        return np.roll(base, 7 * block_id[0], axis=1)[None]

    return da.map_blocks(
        plane, chunks=((1,) * n, (s,), (s,)), dtype=np.uint16, meta=np.empty((0, 0, 0), np.uint16)
    )


def click_to_labels(seg, stack, clicks: int) -> dict:
    """What the widget does per click on an encoded plane: predict from the cached
    embedding, plan the edit against the labels (next ID known, as the adapter keeps it)
    and write the object's bounding box."""
    from napari_sam2.engine import labels as L
    from napari_sam2.engine.edits import plan_edits

    seg.set_image(stack)
    index = (stack.shape[0] // 2,)
    labels = np.zeros(stack.shape, np.int32)  # untouched pages cost no memory
    seg.embedding(index)
    s = stack.shape[-1]
    times, next_id = [], 1
    for k in range(clicks):
        t0 = time.perf_counter()
        preds = seg.predict(index, points=[(s // 4 + 17 * k, s // 3 + 11 * k)])
        for e in plan_edits(labels, preds, index, start_id=next_id):
            L.apply_edit(labels, e)
            next_id = e.label_id + 1
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(times), "max_ms": 1e3 * max(times)}


def revisits_and_reopen(ckpt, size, image_size, img, folder) -> dict:
    stack = np.stack([img, img[::-1].copy(), img[:, ::-1].copy()])
    seg = _segmenter(ckpt, size, image_size, disk_cache=folder)
    seg.set_image(stack)
    seg.precompute()
    first = seg.stats.encodes
    for z in (0, 1, 2, 1, 0):
        seg.predict((z,), points=[(40, 50)])
    revisit = seg.stats.encodes - first
    again = _segmenter(ckpt, size, image_size, disk_cache=folder)  # "the next day"
    again.set_image(stack)
    t0 = time.perf_counter()
    for z in range(3):
        again.predict((z,), points=[(40, 50)])
    reopen_s = time.perf_counter() - t0
    return {
        "first_encodes": first,
        "revisit_encodes": revisit,
        "reopen_encodes": again.stats.encodes,
        "reopen_disk_hits": again.stats.disk_hits,
        "reopen_s": reopen_s,
    }


def prefetch_section():
    try:
        mod = importlib.import_module("bench_prefetch")
    except ImportError:
        return None
    return mod.run()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="input 512, 1 repeat, 20 planes")
    ap.add_argument("--sizes", nargs="+", default=["tiny"], choices=SIZES)
    ap.add_argument("--image-size", type=int, default=None, help="SAM input (default 1024)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--planes", type=int, default=None, help="volume depth (default 200)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--int8", action="store_true", help="dynamic int8 quantisation")
    ap.add_argument("--batch", type=int, default=0, help="batched encode of N planes")
    ap.add_argument("--no-bf16", action="store_true", help="skip fp32 vs bf16")
    ap.add_argument("--no-ab", action="store_true", help="skip 2b (separate processes)")
    ap.add_argument(
        "--bf16-emulated", action="store_true", help="fp32 vs bf16 even without native bf16"
    )
    args = ap.parse_args(argv)
    s = args.image_size or (512 if args.quick else 1024)
    reps = args.repeats or (1 if args.quick else 2)
    planes = args.planes or (20 if args.quick else 200)

    import torch

    from napari_sam2.engine.runtime.precision import decide, native_bf16

    img = sample_image()
    native = native_bf16()
    print(environment())
    print(f"input {s}², median of {reps} after a warm-up; nuclei sample {img.shape} {img.dtype}")
    t_start = time.perf_counter()

    print("\n## 1. arithmetic floor")
    g32 = E.matmul_gflops("fp32", 1024)
    g16 = E.matmul_gflops("bf16", 1024 if native else 256, 5 if native else 2)
    print(
        f"matmul fp32 {g32:.1f} GFLOP/s, bf16 {g16:.1f} GFLOP/s (best of the runs; "
        f"native bf16: {native})"
    )

    print("\n## 2. encode vs stock set_image and vs the fp32 floor")
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    tiny = None
    for size in args.sizes:
        ckpt = _save_random(size, folder, s)
        seg = _segmenter(ckpt, size, s)
        gflop = E.encoder_gflop(seg.backend.loaded.model, s)
        r = E.encode_vs_stock(seg.backend, img, reps)
        floor = gflop / g32
        print(
            f"{size:9} {gflop:6.1f} GFLOP  ours {r['ours_s']:.3f} s  stock {r['stock_s']:.3f} s  "
            f"stock/ours {r['stock_s'] / r['ours_s']:.2f}  floor {floor:.3f} s  "
            f"ours/floor {r['ours_s'] / floor:.2f} (best runs: ours {r['ours_min_s']:.3f} s, "
            f"ours/floor {r['ours_min_s'] / floor:.2f})"
        )
        if size == "tiny" or tiny is None:
            tiny = (size, ckpt, seg, gflop)

    if not args.no_ab:
        import bench_encode_ab

        print("\n## 2b. as shipped (trims + huge pages) vs stock sam2, separate processes")
        print(f"THP_MEM_ALLOC_ENABLE in this process: {os.environ.get('THP_MEM_ALLOC_ENABLE')}")
        bench_encode_ab.main(
            ["--size", "tiny", "--image-size", str(s), "--repeats", str(reps), "--rounds", "1"]
        )

    size, ckpt, seg, gflop = tiny
    backend = seg.backend
    if not native and not args.bf16_emulated:
        print(f"\n## 3. fp32 vs bf16 autocast ({size})")
        print(
            f"skipped: no native bf16, an emulated bf16 encode costs minutes (matmul bf16/fp32 "
            f"speed {g16 / g32:.3f}); precision='auto' rule here: "
            f"{decide(native, None, None, None)[0]} (--bf16-emulated measures it anyway)"
        )
    elif not args.no_bf16:
        print(f"\n## 3. fp32 vs bf16 autocast ({size})")
        p = E.precision_compare(backend, img, reps, native)
        verdict = decide(native, p["fp32_s"], p["bf16_s"], p["agreement"])
        print(
            f"fp32 {p['fp32_s']:.3f} s, bf16 {p['bf16_s']:.3f} s, bf16/fp32 "
            f"{p['bf16_s'] / p['fp32_s']:.2f}; bf16 vs bf16 floor "
            f"{p['bf16_s'] / (gflop / g16):.2f}; masks agree {p['agreement']:.4%} "
            f"(worst click {p['worst']:.4%})"
        )
        print(f"precision='auto' rule here: {verdict[0]} ({verdict[1]})")

    print("\n## 4. in-memory cache dtype (float32 embeddings stored in 16 bits)")
    c = E.cache_dtype_compare(backend, img)
    for store in ("fp16", "bf16"):
        print(
            f"{store}: {c[f'{store}_bytes'] / 2**20:.2f} MiB per plane vs fp32 "
            f"{c['fp32_bytes'] / 2**20:.2f} MiB; masks agree {c[f'{store}_agreement']:.4%} "
            f"(worst click {c[f'{store}_worst']:.4%}); restore to float32 {c[f'{store}_restore_ms']:.1f} ms "
            f"(on the first click after a plane change; then {c[f'{store}_get_ms']:.2f} ms)"
        )

    print("\n## 5. click -> labels with a cached embedding")
    one = click_to_labels(seg, img_plane(img, s)[None], 10)
    vol = _lazy_volume(planes, s, img)
    t0 = time.perf_counter()
    big = click_to_labels(seg, vol, 10)
    vol_s = time.perf_counter() - t0
    print(f"1x{s}x{s}: median {one['median_ms']:.1f} ms (max {one['max_ms']:.1f})")
    print(
        f"{planes}x{s}x{s} dask: median {big['median_ms']:.1f} ms (max {big['max_ms']:.1f}); "
        f"volume/plane ratio {big['median_ms'] / one['median_ms']:.2f} "
        f"(set_image + 1 encode + 10 clicks {vol_s:.1f} s)"
    )

    print("\n## 6. never encode twice")
    r = revisits_and_reopen(ckpt, size, s, img, folder / "disk")
    print(
        f"3 planes precomputed: {r['first_encodes']} encodes; 5 revisits: "
        f"{r['revisit_encodes']} encodes; disk-cache reopen: {r['reopen_encodes']} encodes, "
        f"{r['reopen_disk_hits']} disk hits, 3 clicks in {r['reopen_s']:.2f} s"
    )

    print("\n## 7. prefetch")
    pf = prefetch_section()
    print("benchmarks/bench_prefetch.py not present" if pf is None else pf)

    def make():
        return _segmenter(ckpt, size, s).backend

    if args.batch:
        b = E.batch_gain(backend, img, args.batch, reps)
        print(
            f"\n## batched encode of {args.batch}: {b['batched_s']:.3f} s/plane vs single "
            f"{b['single_s']:.3f} (ratio {b['batched_s'] / b['single_s']:.2f})"
        )
    if args.channels_last:
        r = E.channels_last_gain(make, img, reps)
        print(
            f"\n## channels-last: {r['channels_last_s']:.3f} s vs {r['contiguous_s']:.3f} s "
            f"(ratio {r['channels_last_s'] / r['contiguous_s']:.2f})"
        )
    if args.int8:
        q = E.int8_gain(make, img, reps)
        print(
            f"\n## int8 dynamic: {q['int8_s']:.3f} s vs fp32 {q['fp32_s']:.3f} s (ratio "
            f"{q['int8_s'] / q['fp32_s']:.2f}); masks agree {q['agreement']:.4%} "
            f"(worst {q['worst']:.4%})"
        )
    if args.compile:
        r = E.compile_gain(make, img, reps)
        print(
            f"\n## torch.compile: {r['compiled_s']:.3f} s vs eager {r['eager_s']:.3f} s "
            f"(ratio {r['compiled_s'] / r['eager_s']:.2f}); one-off cost "
            f"{r['compile_cost_s']:.0f} s"
        )
    if torch.cuda.is_available():
        print(f"\n## CUDA: {torch.cuda.get_device_name(0)} -> python benchmarks/bench_gpu.py")
    else:
        print("\n## CUDA: no GPU on this machine (GPU figures: benchmarks/bench_gpu.py)")
    tmp.cleanup()
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    return 0


def img_plane(img, s):
    """The sample placed in an s × s plane (the '1 × S²' case)."""
    out = np.zeros((s, s), img.dtype)
    h, w = min(s, img.shape[0]), min(s, img.shape[1])
    out[:h, :w] = img[:h, :w]
    return out


if __name__ == "__main__":
    sys.exit(main())
