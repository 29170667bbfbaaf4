"""Seconds per plane of propagation: projection vs video mode vs N x single-plane encode.

Real SAM 2.1 tiny architecture with random weights (the cost does not depend on the
weights), on the ovule nuclei stack (tests/data, or ../shared/data with --stack).  All
objects of the middle plane (ground truth) are carried ``--planes`` planes both ways,
with the stop rules off so every run visits the same planes.  In the same run it measures
the single-plane encode time on those planes (fresh cache), and prints

- projection seconds per plane, and its total / (N x encode)   (goal: <= 1.2)
- video seconds per plane, planes per second                     (goal on a GPU: >= 30/s)

    .venv/bin/python benchmarks/bench_propagate.py [--device cpu] [--image-size 512]
        [--planes 4] [--objects 3] [--skip-video]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=None, help="default: 1024")
    ap.add_argument("--planes", type=int, default=4, help="planes each way")
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--stack", default=str(DATA / "nuclei3d_ovule_zyx_uint8.tif"))
    ap.add_argument("--skip-video", action="store_true")
    args = ap.parse_args(argv)

    import tifffile
    import torch

    from napari_sam2 import Segmenter
    from napari_sam2.engine.propagation import propagate

    img = tifffile.imread(args.stack)
    gt_path = Path(args.stack.replace(".tif", "_labels.tif"))
    gt = tifffile.imread(gt_path) if gt_path.is_file() else None
    z = img.shape[0] // 2
    lo, hi = max(0, z - args.planes), min(img.shape[0] - 1, z + args.planes)
    n = hi - lo  # planes visited (start excluded)
    labels = np.zeros(img.shape, np.int32)
    if gt is not None:
        ids = [int(v) for v in np.unique(gt[z]) if v][: args.objects]
        for i in ids:
            labels[z][gt[z] == i] = i
    else:  # no ground truth: squares in the middle
        ids = list(range(1, args.objects + 1))
        for i in ids:
            labels[z, 10 * i : 10 * i + 8, 10:18] = i

    torch.manual_seed(0)
    seg = Segmenter("tiny", random_weights=True, device=args.device, image_size=args.image_size)
    seg.set_image(img)
    print(environment())
    print(
        f"stack {img.shape} {img.dtype}, {len(ids)} objects, planes {lo}..{hi} "
        f"({n} visited), device {args.device}, image_size {seg.backend.image_size}"
    )
    kw = dict(stop_at=(lo, hi), iou_threshold=None, max_area_ratio=None, min_area=0)

    # baseline: N single-plane encodes (warm-up first: lazy init, allocator)
    seg.embedding((lo,))
    enc = []
    for p in range(lo, hi + 1):
        if p == z:
            continue
        seg.cache.clear()
        t0 = time.perf_counter()
        seg.embedding((p,))
        enc.append(time.perf_counter() - t0)
    enc_s = statistics.mean(enc)
    print(f"single-plane encode: {enc_s:.3f} s/plane (mean of {len(enc)})")

    seg.set_image(img)  # fresh cache state for the projection run
    seg.cache.clear()
    rep = propagate(seg, labels.copy(), (z,), mode="projection", **kw)
    proj = rep.seconds
    print(
        f"projection: {proj / n:.3f} s/plane ({proj:.2f} s total); "
        f"ratio to N x encode = {proj / (n * enc_s):.2f} (goal <= 1.2)"
    )
    # the same run again with every embedding cached: what projection adds to the encodes
    # (decoder, prompts, post-processing). Less sensitive to load than the cold ratio.
    t0 = time.perf_counter()
    propagate(seg, labels.copy(), (z,), mode="projection", **kw)
    warm = time.perf_counter() - t0
    print(
        f"projection, embeddings cached: {warm / n:.3f} s/plane; "
        f"(N x encode + this) / (N x encode) = {1 + warm / (n * enc_s):.2f} (goal <= 1.2)"
    )
    if not args.skip_video:
        rep = propagate(seg, labels.copy(), (z,), mode="video", **kw)
        vid = rep.seconds
        print(
            f"video:      {vid / n:.3f} s/plane ({vid:.2f} s total, {n / vid:.1f} planes/s); "
            f"ratio to N x encode = {vid / (n * enc_s):.2f}; "
            f"video / projection = {vid / proj:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
