"""The transformers backend against the official sam2 backend: same weights, same plane.

Converts a random-weight (seeded) SAM 2.1 tiny to the transformers layout, loads it through
both backends and prints, for each: the median encode time and click (decode) time, the
ratio transformers / sam2 measured in this same run, and the mask IoU of a click and of
four boxes at once.  Run on the machine that matters (CPU or GPU):

    .venv/bin/python benchmarks/bench_transformers.py [--image-size 1024] [--repeats 3]
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


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from napari_sam2.engine import Segmenter
    from napari_sam2.engine.model.convert import pt_to_hf
    from napari_sam2.engine.model.load import build_model
    from napari_sam2.engine.model.registry import get_spec

    print(environment())
    img = sample_image()
    plane = img if img.ndim == 2 else img[img.shape[0] // 2]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        pt = Path(tmp) / "sam2.1_hiera_tiny.pt"
        torch.save({"model": build_model(get_spec("tiny")).state_dict()}, pt)
        hf = pt_to_hf(pt, Path(tmp) / "hf", image_size=args.image_size)
        kw = {"device": args.device}
        segs = {
            "sam2": Segmenter("tiny", pt, backend="sam2", image_size=args.image_size, **kw),
            "transformers": Segmenter("tiny", hf, backend="transformers", **kw),
        }
        h, w = plane.shape[:2]
        click = {"points": [(h // 2, w // 2)]}
        boxes = {
            "boxes": [
                (h // 8 * i, w // 8 * i, h // 8 * (i + 2), w // 8 * (i + 2)) for i in range(4)
            ]
        }
        res = {}
        for name, seg in segs.items():
            seg.set_image(plane)
            enc = _median_s(lambda s=seg: (s.cache.clear(), s.embedding()), args.repeats)
            dec = _median_s(lambda s=seg: s.predict(**click), args.repeats * 3)
            res[name] = (enc, dec, seg.predict(**click), seg.predict(**boxes))
            print(f"{name:>12}: encode {enc * 1000:8.1f} ms   click {dec * 1000:7.1f} ms")
        (e0, d0, c0, b0), (e1, d1, c1, b1) = res["sam2"], res["transformers"]
        print(f"ratio transformers/sam2: encode {e1 / e0:.2f}x, click {d1 / d0:.2f}x")

        def iou(a, b):
            return float((a & b).sum() / max((a | b).sum(), 1))

        ious = [iou(c0[0].mask, c1[0].mask)] + [
            iou(x.mask, y.mask) for x, y in zip(b0, b1, strict=True)
        ]
        print("mask IoU (click, 4 boxes):", " ".join(f"{v:.4f}" for v in ious))
        print(
            "max |logit difference|:",
            max(float(np.abs(x.low_res - y.low_res).max()) for x, y in zip(b0, b1, strict=True)),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
