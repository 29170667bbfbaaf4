"""fp32 vs bf16 autocast for the SAM 2 image encoder on this machine's CPU.

Encodes the same plane with the same (random, seeded) SAM 2.1 tiny weights at the default
input size (1024) in fp32 and under bf16 autocast; prints the median times, their ratio,
the max abs difference of the image embedding and a verdict.  This backs the engine's
rule: bf16 on CPU only when asked (``precision="bf16"``), fp32 by default.

    .venv/bin/python benchmarks/bench_precision.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, sample_image  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=None, help="default: 1024")
    ap.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="max abs difference relative to the fp32 embedding's max abs value",
    )
    args = ap.parse_args(argv)

    import torch

    from napari_sam2.engine.backends.sam2 import Sam2Backend
    from napari_sam2.engine.model.load import load_sam2
    from napari_sam2.engine.planes import PlaneSource

    torch.manual_seed(0)
    loaded = load_sam2(
        "tiny", random_weights=True, device="cpu", precision="fp32", image_size=args.image_size
    )
    backend = Sam2Backend(loaded)
    img = PlaneSource(sample_image()).sam_image(())

    results = {}
    for prec in ("fp32", "bf16"):
        backend.precision = prec
        emb = backend.encode(img)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            emb = backend.encode(img)
            times.append(time.perf_counter() - t0)
        results[prec] = (statistics.median(times), emb["image_embed"].float())

    t32, e32 = results["fp32"]
    t16, e16 = results["bf16"]
    diff = float((e32 - e16).abs().max())
    scale = float(e32.abs().max())
    rel = diff / scale
    ratio = t16 / t32
    print(environment())
    print(
        f"SAM 2.1 tiny, random weights (seed 0), image_size {backend.image_size}, "
        f"median of {args.repeats} encodes after one warm-up"
    )
    print(f"fp32 encode: {t32:.3f} s")
    print(f"bf16 encode: {t16:.3f} s")
    print(f"bf16 / fp32 time ratio: {ratio:.2f}")
    print(
        f"image embedding max abs difference: {diff:.4g} "
        f"(fp32 max abs {scale:.4g}, relative {rel:.3%})"
    )
    faster = ratio < 0.9
    close = rel <= args.tolerance
    if faster and close:
        verdict = "bf16 is faster here and within tolerance: worth passing precision='bf16'"
    elif faster:
        verdict = "bf16 is faster here but outside tolerance: keep fp32"
    else:
        verdict = "bf16 is not faster here: keep fp32 (the default on CPU)"
    print(f"verdict: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
