"""Encode: what a stock sam2 user gets vs what napari-sam2 ships, same machine, same run.

Two things make our encode cheaper than ``SAM2ImagePredictor.set_image`` without changing a
bit of its output (docs/performance.md, "Encoder trims" and "Allocator"):

- the exact encoder trims (``engine/runtime/encoder_trims.py``), measurable inside one process
  (our trimmed model vs an untrimmed copy, interleaved);
- torch's huge-page allocation (``THP_MEM_ALLOC_ENABLE=1``, set when a model is loaded,
  before torch is imported), which torch reads once at import, so it is compared across
  processes.

The parent runs child processes alternately with huge pages off and on; each child times
the stock predictor (untrimmed copy) and ours, interleaved, and reports wall time, CPU time
(user + sys: less sensitive to other jobs on the machine) and page faults per encode.

    python benchmarks/bench_encode_ab.py [--size tiny] [--image-size 1024] [--repeats 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def child(size: str, image_size: int, repeats: int) -> dict:
    import napari_sam2
    from napari_sam2.engine.runtime.allocator import prefer_huge_pages

    prefer_huge_pages()  # first: it sets the variable torch reads at import (as a model load)

    thp = os.environ.get("THP_MEM_ALLOC_ENABLE"), napari_sam2.__version__
    import resource
    import tempfile
    import time
    from pathlib import Path

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _encode_sections import stock_predictor
    from run_all import _save_random, _segmenter

    with tempfile.TemporaryDirectory() as tmp:
        seg = _segmenter(_save_random(size, Path(tmp), image_size), size, image_size)
    backend = seg.backend
    stock = stock_predictor(backend)
    s = image_size
    rng = np.random.default_rng(0)

    def usage():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime, r.ru_minflt

    def run(fn):
        image = rng.random((s, s, 3), dtype=np.float32)
        c0, f0 = usage()
        t0 = time.perf_counter()
        fn(image)
        wall = time.perf_counter() - t0
        c1, f1 = usage()
        return wall, c1 - c0, f1 - f0

    def stock_encode(image):
        with torch.inference_mode():
            stock.set_image(image)

    out = {"stock": [], "ours": []}
    run(backend.encode)  # warm-up of both paths
    run(stock_encode)
    for _ in range(repeats):
        out["ours"].append(run(backend.encode))
        out["stock"].append(run(stock_encode))
    out["thp"] = thp[0]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.size, args.image_size, args.repeats)))
        return 0
    runs = {"off": [], "on": []}
    for _ in range(args.rounds):
        for thp in ("off", "on"):
            env = dict(os.environ)
            env.pop("THP_MEM_ALLOC_ENABLE", None)
            env["NAPARI_SAM2_HUGE_PAGES"] = "0" if thp == "off" else "1"
            cmd = [sys.executable, __file__, "--child", "--size", args.size]
            cmd += ["--image-size", str(args.image_size), "--repeats", str(args.repeats)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[thp].append(json.loads(res.stdout.strip().splitlines()[-1]))

    def med(thp, path, k):
        return statistics.median(v[k] for r in runs[thp] for v in r[path])

    print(f"{args.size}, input {args.image_size}, {args.rounds}×{args.repeats} encodes per cell")
    print("huge pages  path    wall s   cpu s   page faults")
    for thp in ("off", "on"):
        for path in ("stock", "ours"):
            w, c, f = (med(thp, path, k) for k in range(3))
            print(f"{thp:10}  {path:6}  {w:6.3f}  {c:6.3f}  {f:11.0f}")
    for label, k in (("wall", 0), ("cpu", 1)):
        trims_off = med("off", "stock", k) / med("off", "ours", k)
        trims_on = med("on", "stock", k) / med("on", "ours", k)
        thp_gain = med("off", "ours", k) / med("on", "ours", k)
        shipped = med("off", "stock", k) / med("on", "ours", k)
        print(
            f"{label}: trims (same process) {trims_off:.2f}× / {trims_on:.2f}×, "
            f"huge pages {thp_gain:.2f}×, stock sam2 (no huge pages) / ours as shipped "
            f"{shipped:.2f}×"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
