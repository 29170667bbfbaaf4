"""Encode once, predict many times: what a revisited plane costs.

Builds the real SAM 2.1 tiny architecture with random weights at the default input size
(1024), encodes one plane of the 2D nuclei sample once, then predicts 20 times on the
same plane (a click each time, as the widget does).  Prints the encode time, the mean
predict time and the ratio "revisit cost / first visit cost", all from this one run.

    .venv/bin/python benchmarks/bench_cache.py [--repeats 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, sample_image  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=None, help="default: 1024")
    args = ap.parse_args(argv)

    import torch

    from napari_sam2 import Segmenter

    torch.manual_seed(0)
    t0 = time.perf_counter()
    seg = Segmenter("tiny", random_weights=True, device=args.device, image_size=args.image_size)
    load_s = time.perf_counter() - t0
    image = sample_image()
    # two planes: plane 0 warms torch up (the very first encode of a process is slower),
    # plane 1 is the measured "first visit" and is then revisited
    stack = np.stack([image, image[::-1].copy()])
    seg.set_image(stack)

    t0 = time.perf_counter()
    seg.predict(0, points=[(256, 256)])
    cold_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    seg.predict(1, points=[(256, 256)])  # first visit: encode + decode
    first_s = time.perf_counter() - t0
    encode_s = seg.stats.last_encode_s
    encodes_before = seg.stats.encodes

    times = []
    for i in range(args.repeats):
        pt = [(200 + 5 * i, 180 + 7 * i)]
        t0 = time.perf_counter()
        seg.predict(1, points=pt)
        times.append(time.perf_counter() - t0)
    mean_s = statistics.mean(times)
    re_encodes = seg.stats.encodes - encodes_before

    print(environment())
    print(
        f"model: SAM 2.1 tiny, random weights, image_size {seg.backend.image_size}, "
        f"device {seg.backend.device}, precision {seg.backend.precision}"
    )
    print(f"image: nuclei_2d sample {image.shape} {image.dtype}; model load {load_s:.2f} s")
    print(f"cold start (first encode of the process + predict): {cold_s:.3f} s")
    print(f"first visit of a plane (encode + predict): {first_s:.3f} s (encode {encode_s:.3f} s)")
    print(
        f"revisit predict, mean of {args.repeats}: {mean_s * 1000:.1f} ms "
        f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}); "
        f"re-encodes during revisits: {re_encodes}"
    )
    print(f"encodes {seg.stats.encodes}, cache hits {seg.stats.hits}")
    print(f"revisit cost / first visit cost = {mean_s / first_s:.4f} (1 : {first_s / mean_s:.0f})")
    return 0 if re_encodes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
