"""SAM 2 on a CUDA GPU: encode/predict times per model size, fp32 vs bf16, vs the CPU.

For each size, random weights (seeded) are saved as an official-looking checkpoint and
loaded back through the real loading path (``Segmenter(checkpoint=...)``).  The shipped
2-D nuclei sample (512x512 uint16) is encoded at SAM 2's default input size (1024).

Printed per size and precision: median encode time (new content each time, so the cache
never answers), median single-click predict, median 10-box batched predict, peak GPU
memory.  Ratios: GPU encode / CPU encode (tiny, fp32, measured in the same run) and
bf16 / fp32.  Needs a CUDA GPU; exits 2 without one.

    python benchmarks/bench_gpu.py [--sizes tiny large] [--repeats 5] [--cpu-repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, sample_image  # noqa: E402

SIZES = ("tiny", "small", "base_plus", "large")


def _sync(torch):
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(torch, fn, repeats):
    times = []
    for _ in range(repeats):
        _sync(torch)
        t0 = time.perf_counter()
        fn()
        _sync(torch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _save_random(size: str, folder: Path, torch) -> Path:
    from napari_sam2.engine.model.load import build_model
    from napari_sam2.engine.model.registry import get_spec

    spec = get_spec(size)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(spec)
    path = folder / spec.checkpoint_name
    torch.save({"model": model.state_dict()}, path)
    return path


def _measure(size, ckpt, device, precision, img, repeats, torch):
    import numpy as np

    from napari_sam2.engine import Segmenter

    t0 = time.perf_counter()
    seg = Segmenter(size, checkpoint=ckpt, backend="sam2", device=device, precision=precision)
    load_s = time.perf_counter() - t0
    seg.set_image(img)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seg.embedding(())  # warm-up (cuDNN autotune, lazy init)
    counter = iter(range(1, 10_000))

    def encode():
        # new content every call, so the cache cannot answer
        seg.set_image(img + np.uint16(next(counter)))
        seg.embedding(())

    enc = _timed(torch, encode, repeats)
    rng = np.random.default_rng(0)
    h, w = img.shape
    click = _timed(
        torch, lambda: seg.predict(points=[[h // 2, w // 2]], point_labels=[1]), max(5, repeats)
    )
    r0 = rng.integers(0, h - 60, 10)
    c0 = rng.integers(0, w - 60, 10)
    boxes = np.stack([r0, c0, r0 + 50, c0 + 50], 1)
    batch = _timed(torch, lambda: seg.predict(boxes=boxes), max(5, repeats))
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    return {"load": load_s, "encode": enc, "click": click, "boxes10": batch, "peak_mib": peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu-repeats", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("No CUDA GPU: nothing to measure.")
        return 2
    img = sample_image()
    print(environment())
    print(
        f"GPU: {torch.cuda.get_device_name(0)}; bf16 supported: {torch.cuda.is_bf16_supported()}"
    )
    print(f"image {img.shape} {img.dtype}, SAM input 1024, median of {args.repeats} after warm-up")
    print(
        f"{'model':10} {'device':5} {'prec':5} {'load s':>7} {'encode ms':>10} "
        f"{'click ms':>9} {'10 boxes ms':>12} {'peak MiB':>9}"
    )
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            ckpt = _save_random(size, Path(tmp), torch)
            runs = [("cuda", "fp32"), ("cuda", "bf16")]
            if size == "tiny":
                runs.append(("cpu", "fp32"))
            for device, prec in runs:
                reps = args.cpu_repeats if device == "cpu" else args.repeats
                r = _measure(size, ckpt, device, prec, img, reps, torch)
                rows[size, device, prec] = r
                print(
                    f"{size:10} {device:5} {prec:5} {r['load']:7.2f} {1e3 * r['encode']:10.1f} "
                    f"{1e3 * r['click']:9.1f} {1e3 * r['boxes10']:12.1f} {r['peak_mib']:9.0f}"
                )
            ckpt.unlink()
    print()
    for size in args.sizes:
        f32, b16 = rows[size, "cuda", "fp32"], rows[size, "cuda", "bf16"]
        print(
            f"{size}: bf16/fp32 encode ratio {b16['encode'] / f32['encode']:.2f}, "
            f"click ratio {b16['click'] / f32['click']:.2f}"
        )
    if ("tiny", "cpu", "fp32") in rows:
        cpu, gpu = rows["tiny", "cpu", "fp32"], rows["tiny", "cuda", "bf16"]
        print(
            f"tiny: GPU(bf16)/CPU(fp32) encode ratio {gpu['encode'] / cpu['encode']:.3f}, "
            f"click ratio {gpu['click'] / cpu['click']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
