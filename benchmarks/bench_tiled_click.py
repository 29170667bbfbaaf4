"""Memory and time of one click on a large lazy plane, against the plane size.

Builds lazily backed planes (dask over a synthetic reader: bright discs on a 512 px
lattice, computed on demand, chunks of 1024 px) of growing size, shows each as an Image
layer with a numpy Labels layer of its size in a ``napari.components.ViewerModel``, and
clicks a disc through :class:`napari_sam2.adapter.session.SegmentationSession`
(prepare + compute + commit).  For each size it prints the chunks read, the peak traced
memory (``tracemalloc``: numpy allocations included) and the time, and the ratio of each
to the smallest plane's: bounded by the tile, they stay near 1 while the plane grows 100x.

Then the scripted API (issue 22): one click through ``Segmenter.predict`` on a lazy
24 576² dask plane, with and without caller contrast limits (without them the stack-wide
percentiles are sampled first), against the goal of < 5 s and < 1.5 GB peak RSS growth
with the clicked pixel inside the mask.  ``Segmenter.predict`` tiles such a plane by
itself; ``tile=False`` (whole plane: 240 s and +17.9 GB measured in issue 22) is not run.

    .venv/bin/python benchmarks/bench_tiled_click.py [--backend classical] [--side 24576]
        [--scripted-only] [--random-weights]
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np

CHUNK, PERIOD, RADIUS = 1024, 512, 60


class LazyDiscs:
    def __init__(self, shape):
        self.shape, self.dtype, self.ndim = shape, np.dtype(np.uint16), 2
        self.chunks = set()

    def __getitem__(self, key):
        rs, cs = key
        rows = np.arange(*rs.indices(self.shape[0]))
        cols = np.arange(*cs.indices(self.shape[1]))
        if rows.size and cols.size:
            self.chunks |= {(a // CHUNK, b // CHUNK) for a in rows[::CHUNK] for b in cols[::CHUNK]}
        r = rows % PERIOD - PERIOD / 2
        c = cols % PERIOD - PERIOD / 2
        return np.where(r[:, None] ** 2 + c[None, :] ** 2 <= RADIUS**2, 3000, 100).astype(
            np.uint16
        )


def click(shape, backend: str) -> dict:
    import dask.array as da
    from napari.components import ViewerModel

    from napari_sam2.adapter.layers import new_points_layer
    from napari_sam2.adapter.session import SegmentationSession
    from napari_sam2.engine import Segmenter

    backing = LazyDiscs(shape)
    viewer = ViewerModel()
    img = viewer.add_image(
        da.from_array(backing, chunks=CHUNK, asarray=False, name=False), contrast_limits=(0, 3000)
    )
    s = SegmentationSession(viewer, Segmenter(backend=backend))
    s.image_layer = img
    s.points_layer = new_points_layer(viewer, img)
    s.labels_layer = viewer.add_labels(np.zeros(shape, np.uint16))
    centre = tuple(n // 2 // PERIOD * PERIOD + PERIOD // 2 for n in shape)  # a disc
    s.points_layer.add(centre)
    backing.chunks.clear()
    tracemalloc.start()
    t0 = time.perf_counter()
    res = s.compute(s.prepare())
    s.accept(res)
    ids = s.commit()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ids == [1] and s.labels_layer.data[centre] == 1
    n_chunks = math.ceil(shape[0] / CHUNK) * math.ceil(shape[1] / CHUNK)
    return {"chunks": len(backing.chunks), "of": n_chunks, "peak_mb": peak / 1e6, "s": dt}


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def scripted_click(side: int, backend: str, contrast_limits, random_weights=False) -> dict:
    """One click through Segmenter.predict on a lazy side x side plane."""
    import dask.array as da

    from napari_sam2.engine import Segmenter

    backing = LazyDiscs((side, side))
    lazy = da.from_array(backing, chunks=CHUNK, asarray=False, name=False)
    seg = Segmenter(backend=backend, random_weights=random_weights)  # built before timing
    centre = (side // 2 // PERIOD * PERIOD + PERIOD // 2,) * 2
    backing.chunks.clear()
    rss0 = _peak_rss_bytes()
    t0 = time.perf_counter()
    seg.set_image(lazy, contrast_limits=contrast_limits)
    [pred] = seg.predict(points=[centre])
    dt = time.perf_counter() - t0
    grow = max(0, _peak_rss_bytes() - rss0)
    r0, c0 = pred.offset
    inside = bool(pred.mask[centre[0] - r0, centre[1] - c0])
    return {"s": dt, "rss_gb": grow / 1e9, "inside": inside, "chunks": len(backing.chunks),
            "of": math.ceil(side / CHUNK) ** 2, "mask": pred.mask.shape, "offset": (r0, c0)}  # fmt: skip


def main_scripted(side: int, backend: str, random_weights=False) -> None:
    print(f"\nScripted API: Segmenter.predict, one click on a lazy {side}² dask plane "
          f"({backend}); goal < 5 s, < 1.5 GB peak RSS growth, click inside the mask")  # fmt: skip
    for cl, what in (((0, 3000), "contrast_limits given"), (None, "stack percentiles")):
        r = scripted_click(side, backend, cl, random_weights)
        # random weights: time and memory only (their mask says nothing about the click)
        ok = r["s"] < 5 and r["rss_gb"] < 1.5 and (r["inside"] or random_weights)
        print(
            f"  {what:>22}: {r['s']:.2f} s, peak RSS +{r['rss_gb']:.2f} GB, "
            f"{r['chunks']} of {r['of']} chunks read, mask {r['mask']} at {r['offset']}, "
            f"click inside: {r['inside']} -> {'meets' if ok else 'MISSES'} the goal"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="classical")
    ap.add_argument("--side", type=int, default=24_576)
    ap.add_argument("--scripted-only", action="store_true")
    ap.add_argument("--random-weights", action="store_true",
                    help="SAM 2 (--backend sam2) without a checkpoint: time and memory only")  # fmt: skip
    args = ap.parse_args(argv)
    if args.scripted_only:
        main_scripted(args.side, args.backend, args.random_weights)
        return
    base = None
    print(f"{'plane':>15} {'chunks read':>14} {'peak MB':>8} {'time s':>7}  ratios vs smallest")
    for shape in ((4_000, 3_000), (10_000, 10_000), (40_000, 30_000)):
        r = click(shape, args.backend)
        base = base or r
        print(
            f"{shape[0]:>7} x {shape[1]:<6} {r['chunks']:>5} of {r['of']:<6} "
            f"{r['peak_mb']:>8.1f} {r['s']:>7.2f}  memory x{r['peak_mb'] / base['peak_mb']:.2f}, "
            f"time x{r['s'] / base['s']:.2f}, pixels x{shape[0] * shape[1] / 12e6:.0f}"
        )

    main_scripted(args.side, args.backend)


if __name__ == "__main__":
    main()
