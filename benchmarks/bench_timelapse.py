"""How far objects of a real time-lapse get: the Z rule vs the time rule (``axis_kind``).

On the held-out-like phase-contrast bacteria time-lapse (``/work/shared/data`` or
``--movie``), every ground-truth object of frame 0 is propagated forward with the
classical backend (or ``--backend``), once with ``axis_kind="z"`` (the IoU >= 0.5 rule)
and once with ``axis_kind="t"`` (motion estimate + same-object rule).  Prints, per rule:
how many objects survive frame 1, how many reach the last frame, the stop reasons, and the
mean IoU of each written mask with the ground-truth object it covers most (the ID stays
on the right cell when that object is the one it started on, counted via the largest
overlap at frame 0).  Nothing is tuned to this file.

    .venv/bin/python benchmarks/bench_timelapse.py [--movie PATH] [--frames 10]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np

SHARED = Path("/work/shared/data/bacteria_phase_tyx_uint8.tif")


def run(movie, truth, kind: str, backend: str) -> dict:
    from napari_sam2.engine import Segmenter

    seg = Segmenter(backend=backend)
    seg.set_image(movie)
    labels = np.zeros(truth.shape, np.int32)
    labels[0] = truth[0]
    t0 = time.perf_counter()
    rep = seg.propagate(labels, (0,), axis=0, direction="forward", axis_kind=kind)
    dt = time.perf_counter() - t0
    ids = rep.label_ids
    survive1 = sum(1 in rep.objects[i].areas for i in ids)
    last = truth.shape[0] - 1
    to_end = sum(last in rep.objects[i].areas for i in ids)
    reasons = collections.Counter(rep.objects[i].stopped["forward"] for i in ids)
    # on the right cell: the GT object under the mask is the one that carries the ID in the
    # ground truth (the GT tracks keep IDs across frames in this file)
    right = frames = 0
    ious = []
    for t in range(1, truth.shape[0]):
        for lid in ids:
            m = labels[t] == lid
            if not m.any():
                continue
            frames += 1
            under, counts = np.unique(truth[t][m], return_counts=True)
            best = int(under[np.argmax(counts)])
            right += best == lid
            if best:
                g = truth[t] == best
                ious.append((m & g).sum() / (m | g).sum())
    return {
        "objects": len(ids),
        "survive_frame1": survive1,
        "reach_last": to_end,
        "reasons": dict(reasons),
        "frames_written": frames,
        "on_same_id": right,
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "seconds": dt,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movie", default=str(SHARED))
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--backend", default="classical")
    args = ap.parse_args(argv)
    import tifffile

    path = Path(args.movie)
    if not path.is_file():
        print(f"{path} not found: nothing to measure")
        return 0
    movie = tifffile.imread(path)[: args.frames]
    truth = tifffile.imread(str(path).replace(".tif", "_labels.tif"))[: args.frames]
    print(f"{path.name}: {movie.shape}, backend {args.backend}")
    for kind in ("z", "t"):
        r = run(movie, truth, kind, args.backend)
        print(
            f"axis_kind={kind}: {r['survive_frame1']}/{r['objects']} objects survive frame 1, "
            f"{r['reach_last']} reach frame {movie.shape[0] - 1}; stops {r['reasons']}; "
            f"{r['on_same_id']}/{r['frames_written']} written frames on the GT object of the "
            f"same ID, mean IoU {r['mean_iou']:.2f}; {r['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
