"""Segment everything: ours vs sam2's stock ``SAM2AutomaticMaskGenerator``, same run.

Builds the real SAM 2.1 tiny architecture with random weights, takes one plane of the
nuclei sample, and for each threshold preset runs

- **stock**: ``SAM2AutomaticMaskGenerator(model, points_per_side=N, ...).generate(image)``
  (it encodes the image itself, decodes ``points_per_batch=64`` clicks at a time,
  upsamples every candidate to full resolution, keeps RLEs);
- **ours, cold**: encode the plane + :func:`sam2_candidates` + the survivors' masks (the
  same output as the stock generator: a list of masks);
- **ours, cached**: the same on the cached embedding (a revisited plane, or a second run
  with other settings — what the widget does);
- **ours, labels**: ``Segmenter.segment_everything`` on the cached embedding (overlaps
  resolved into an instance labels plane).

and prints times, the ratios stock / ours and the instance agreement (masks matched by
IoU; min and mean of the best-match IoU; counts).

Random weights predict IoU ~0.5 and near-zero logits, so SAM's default thresholds (0.8,
0.95) keep nothing: that preset measures the decoding alone.  The ``permissive`` preset
lets about half of the candidates through both generators (the post-processing load of a
real model with many good masks).

    .venv/bin/python benchmarks/bench_everything.py [--points-per-side 16] \
        [--image-size 1024] [--device cpu] [--crop 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, sample_image  # noqa: E402

PRESETS = {
    "default": dict(pred_iou_thresh=0.8, stability_score_thresh=0.95),
    "permissive": dict(
        pred_iou_thresh=0.47, stability_score_thresh=0.6, stability_score_offset=0.01
    ),
}


def best_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a))
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return (inter / np.maximum(union, 1)).max(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--crop", type=int, default=512, help="plane side taken from the sample")
    ap.add_argument("--presets", default="default,permissive")
    args = ap.parse_args(argv)

    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from napari_sam2 import Segmenter
    from napari_sam2.engine.automatic.params import EverythingParams
    from napari_sam2.engine.backends.sam2_automatic import sam2_candidates

    torch.manual_seed(0)
    seg = Segmenter("tiny", random_weights=True, device=args.device, image_size=args.image_size)
    plane = sample_image()[: args.crop, : args.crop]
    seg.set_image(plane)
    image = seg.source.sam_image()
    s = seg.backend.image_size
    n = args.points_per_side
    print(environment())
    print(
        f"plane {plane.shape} {plane.dtype}, SAM input {s}, tiny (random weights), "
        f"device {args.device}, points_per_side {n} ({n * n} clicks)"
    )

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for name in args.presets.split(","):
        kw = PRESETS[name]
        gen = SAM2AutomaticMaskGenerator(seg.backend.loaded.model, points_per_side=n, **kw)
        gen.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        sync()
        t0 = time.perf_counter()
        recs = gen.generate(image)
        sync()
        t_stock = time.perf_counter() - t0

        params = EverythingParams(points_per_side=n, **kw)
        seg.cache.clear()
        t0 = time.perf_counter()
        emb = seg.embedding()
        cand = sam2_candidates(seg.backend, emb, params)
        ours = cand.masks()
        sync()
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        cand = sam2_candidates(seg.backend, seg.embedding(), params)
        ours = cand.masks()
        sync()
        t_warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        # one piece like the stock generator (larger planes are tiled by default)
        lab = seg.segment_everything(points_per_side=n, tile_size=max(plane.shape), **kw)
        sync()
        t_labels = time.perf_counter() - t0

        theirs = (
            np.stack([r["segmentation"] for r in recs])
            if recs
            else np.zeros((0,) + plane.shape, bool)
        )
        m1, m2 = best_iou(ours, theirs), best_iou(theirs, ours)
        agree = (
            f"best-match IoU ours→stock min {m1.min():.4f} mean {m1.mean():.4f}, "
            f"stock→ours min {m2.min():.4f}"
            if len(ours) and len(theirs)
            else "no masks on either side"
            if not len(ours) and not len(theirs)
            else "MISMATCH"
        )
        print(
            f"[{name}] stock {t_stock:.2f} s ({len(recs)} masks) | ours cold {t_cold:.2f} s "
            f"({len(cand)} masks), cached {t_warm:.2f} s, labels {t_labels:.2f} s "
            f"({int(lab.max())} objects) | stock/ours cold {t_stock / t_cold:.2f}x, "
            f"stock/ours cached {t_stock / t_warm:.2f}x | {agree}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
