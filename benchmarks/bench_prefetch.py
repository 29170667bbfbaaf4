"""Does prefetching neighbouring planes help or hurt the click latency?

SAM 2.1 tiny (real architecture, random weights) on a synthetic Z-stack, driven the way the
widget drives :class:`napari_sam2.engine.cache.prefetch.Prefetcher`: after each click the
viewed plane's neighbours are prefetched while the user thinks; a click cancels it first
(the user moves and clicks at once, so the widget's debounced restart on a slice change
does not start).

1. ``cached_click``: latency of a click on an encoded plane, alone and while a prefetch
   encode runs (the price: the click waits for the encoder block in progress).
2. ``walk``: the user clicks on plane z, thinks ``think`` × one encode, moves to z+1 and
   clicks there, and so on; mean click latency with and without prefetch, and the hit
   rate (the next plane already encoded when clicked).

``run() -> dict`` (imported by ``benchmarks/run_all.py``); as a script it prints the dict.

    python benchmarks/bench_prefetch.py [--image-size 1024] [--planes 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _stack(n, hw=(512, 512), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    out = np.empty((n, *hw), np.uint16)
    for z in range(n):
        disc = (yy - hw[0] // 2) ** 2 + (xx - hw[1] // 2) ** 2 <= (60 + 5 * z) ** 2
        out[z] = rng.normal(400, 60, hw).clip(0) + 2500 * disc
    return out


def _click(seg, prefetcher, z, hw):
    """A click on plane z as the widget does it: the prefetch is cancelled first."""
    t0 = time.perf_counter()
    if prefetcher is not None:
        prefetcher.cancel()
    hit = seg.is_encoded((z,))
    seg.predict((z,), points=[(hw[0] // 2, hw[1] // 2)])
    return time.perf_counter() - t0, hit


def _walk(seg, planes, hw, think_s, prefetch: bool):
    from napari_sam2.engine.cache.prefetch import Prefetcher, neighbours

    seg.cache.clear()
    pf = Prefetcher(seg) if prefetch else None
    lat, hits = [], []
    shape = (planes,)
    for z in range(planes):
        t, hit = _click(seg, pf, z, hw)
        if z:  # the first click is on a fresh stack: not a "next plane"
            lat.append(t)
            hits.append(hit)
        if pf is not None:  # idle again: prefetch the neighbours
            pf.start(neighbours((z,), shape, direction=1))
        time.sleep(think_s)
    if pf is not None:
        pf.cancel(wait=True)
    return float(np.mean(lat)), float(np.mean(hits))


def run(
    image_size: int = 1024,
    planes: int = 4,
    thinks=(0.5, 1.5),
    device: str = "cpu",
    repeats: int = 3,
) -> dict:
    """Measure; returns a dict of seconds and ratios (see the module docstring)."""
    import torch

    from napari_sam2.engine import Segmenter
    from napari_sam2.engine.cache.prefetch import Prefetcher

    torch.manual_seed(0)
    seg = Segmenter(
        "tiny", backend="sam2", random_weights=True, device=device, image_size=image_size
    )
    seg.warm_up()
    stack = _stack(max(planes, 2))
    hw = stack.shape[1:]
    seg.set_image(stack)
    t0 = time.perf_counter()
    seg.embedding((0,))
    encode_s = time.perf_counter() - t0
    alone = min(_click(seg, None, 0, hw)[0] for _ in range(repeats))

    pf = Prefetcher(seg)
    during = []
    for k in range(repeats):
        seg.cache.clear()
        seg.embedding((0,))
        pf.start([(1,)])
        time.sleep(0.3 * encode_s + 0.1 * k * encode_s)  # somewhere inside the encode
        during.append(_click(seg, pf, 0, hw)[0])
        pf.cancel(wait=True)

    walk = {}
    for m in thinks:
        without, _ = _walk(seg, planes, hw, m * encode_s, prefetch=False)
        with_pf, hit_rate = _walk(seg, planes, hw, m * encode_s, prefetch=True)
        walk[f"think {m:g} encode"] = {
            "click_s_without": round(without, 3),
            "click_s_with": round(with_pf, 3),
            "ratio_with_over_without": round(with_pf / without, 3),
            "hit_rate_next_plane": round(hit_rate, 3),
        }
    return {
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "image_size": image_size,
        "encode_s": round(encode_s, 3),
        "cached_click_s": round(alone, 3),
        "cached_click_during_prefetch_s": round(float(np.mean(during)), 3),
        "cached_click_ratio": round(float(np.mean(during)) / alone, 2),
        "walk": walk,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--planes", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    out = run(image_size=args.image_size, planes=args.planes, device=args.device)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
