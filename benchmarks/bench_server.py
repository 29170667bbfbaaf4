"""Remote encode through ``napari-sam2 serve`` vs a local encode, on the same machine.

Builds SAM 2.1 (random weights, real architecture) once per model size, serves it with a
real uvicorn on 127.0.0.1 (token required), and measures in this one run:

1. **overhead**: median time of a remote encode (upload + queue + encode + reply + unpack)
   over the median local encode of the same planes — serialisation and transfer cost, the
   issue's goal is at most +15 % on loopback;
2. **bytes per plane**: request (image, gray planes as one channel, zstd) and reply
   (embedding in fp16 / bf16 / fp32, zstd);
3. **clients**: ``--clients`` concurrent clients each asking for the same ``--planes``
   planes in their own order: p50/p95 latency of a plane request and the encodes the shared
   cache saved (requests − encodes).

Client and server share this machine's CPU, so on a CPU the overhead includes their
contention; a GPU server (``--device cuda``) gives the realistic figure.

    .venv/bin/python benchmarks/bench_server.py [--models tiny] [--planes 4] [--clients 8]
        [--image-size 1024] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import environment, sample_image  # noqa: E402

from server_helpers import TOKEN, running_server  # noqa: E402


def _planes(n: int) -> list[np.ndarray]:
    """``n`` distinct float32 (H, W, 3) SAM inputs from the nuclei sample (rolled copies)."""
    img = sample_image().astype(np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    g = np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32)
    return [np.repeat(np.roll(g, 17 * i, axis=1)[..., None], 3, -1) for i in range(n)]


def _pct(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench_model(size: str, args) -> dict:
    import torch

    from napari_sam2.engine.backends.remote import connect, wire
    from napari_sam2.engine.backends.sam2 import Sam2Backend
    from napari_sam2.engine.model.load import load_sam2

    torch.manual_seed(0)
    loaded = load_sam2(size, None, random_weights=True, device=args.device,
                       image_size=args.image_size)  # fmt: skip
    backend = Sam2Backend(loaded)
    planes = _planes(args.planes)
    backend.encode(planes[0])  # warm-up (first-call costs)
    emb = backend.encode(planes[0])
    up = len(wire.pack_image(planes[0], {}))
    down = {dt: len(wire.pack_embedding(emb, dt)) for dt in wire.EMBEDDING_DTYPES}
    with running_server(backend) as (url, built):
        warm = connect(url, TOKEN)
        warm.encode(np.flip(planes[0], 0).copy())  # server warm path, not measured
        local, remote = [], []
        for p in planes:  # interleaved: the machine's load drifts alike for both
            t0 = time.perf_counter()
            backend.encode(p)
            local.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            warm.encode(p)
            remote.append(time.perf_counter() - t0)
        before = built.scheduler.counters.encodes
        shifted = [np.ascontiguousarray(np.flip(p, 1)) for p in planes]  # new to the server
        lat: list[float] = []

        def client(i):
            be = connect(url, TOKEN)
            order = shifted[i % len(shifted) :] + shifted[: i % len(shifted)]
            for p in order:
                t0 = time.perf_counter()
                be.encode(p)
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        wall = time.perf_counter() - t0
        encodes = built.scheduler.counters.encodes - before
    requests = args.clients * len(planes)
    return {
        "size": size,
        "local_s": statistics.median(local),
        "remote_s": statistics.median(remote),
        "up": up,
        "down": down,
        "p50": _pct(lat, 50),
        "p95": _pct(lat, 95),
        "requests": requests,
        "encodes": encodes,
        "wall": wall,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny", help="comma-separated sizes")
    ap.add_argument("--planes", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    print(environment())
    print(f"device {args.device}, input {args.image_size} px, plane 512x512 (nuclei sample), "
          f"{args.planes} planes, {args.clients} clients")  # fmt: skip
    for size in args.models.split(","):
        r = bench_model(size, args)
        mb = {k: v / 1e6 for k, v in r["down"].items()}
        print(
            f"\n[{size}] local encode {r['local_s']:.3f} s, remote encode + transfer "
            f"{r['remote_s']:.3f} s: overhead {100 * (r['remote_s'] / r['local_s'] - 1):+.1f} %"
        )
        print(
            f"[{size}] bytes per plane: request {r['up'] / 1e6:.2f} MB; reply fp16 "
            f"{mb['fp16']:.2f} MB, bf16 {mb['bf16']:.2f} MB, fp32 {mb['fp32']:.2f} MB"
        )
        print(f"[{size}] {args.clients} clients x {args.planes} planes: p50 {r['p50']:.2f} s, "
              f"p95 {r['p95']:.2f} s, wall {r['wall']:.1f} s; {r['requests']} requests, "
              f"{r['encodes']} encodes ({r['requests'] - r['encodes']} saved by the shared "
              "cache)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
