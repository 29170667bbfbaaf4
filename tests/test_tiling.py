"""Tiling of planes larger than the model input, on the real nuclei image mosaicked."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_sam2.engine import Segmenter
from napari_sam2.engine.tiling import predict_tiled, segment_into_tiled, tile_around, tile_grid

TILE, OVERLAP = 256, 64


@pytest.fixture(scope="module")
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    gt = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif").astype(np.int32)
    return img, gt


@pytest.fixture(scope="module")
def mosaic(nuclei):
    """2 x 2 mosaic (1024 x 1024) of the image and of its ground truth (unique IDs)."""
    img, gt = nuclei
    big = np.block([[img, img[:, ::-1]], [img[::-1], img[::-1, ::-1]]])
    n = int(gt.max())
    g = [gt, gt[:, ::-1] + n * (gt[:, ::-1] > 0)]
    g += [gt[::-1] + 2 * n * (gt[::-1] > 0), gt[::-1, ::-1] + 3 * n * (gt[::-1, ::-1] > 0)]
    return big, np.block([[g[0], g[1]], [g[2], g[3]]])


def test_tile_grid_covers_and_cores_partition():
    tiles = tile_grid((1000, 700), 256, 64)
    cover = np.zeros((1000, 700), int)
    core = np.zeros((1000, 700), int)
    for t in tiles:
        assert t.shape == (256, 256)
        cover[t.slices] += 1
        r0, c0, r1, c1 = t.core
        assert t.r0 <= r0 < r1 <= t.r1 and t.c0 <= c0 < c1 <= t.c1
        core[r0:r1, c0:c1] += 1
    assert cover.min() >= 1 and np.all(core == 1)
    assert tiles[0].cut == (False, False, True, True)
    t = tile_around((20000, 20000), 100, 19990, 120, 19995, 1024)
    assert (t.r0, t.r1, t.c1 - t.c0, t.c1) == (0, 1024, 1024, 20000)


def test_tiled_everything_agrees_with_untiled(mosaic):
    big, gt = mosaic
    seg = Segmenter(backend="classical").set_image(big)
    whole = seg.segment_everything()  # 1024 px < the classical 2048 px tile: one piece
    tiled = seg.segment_everything(tile_size=TILE, tile_overlap=OVERLAP)
    assert tiled.dtype == np.int32
    n = int(tiled.max())
    assert list(np.unique(tiled)) == list(range(n + 1))
    tiles = tile_grid(big.shape, TILE, OVERLAP)
    edges_r = sorted({t.r0 for t in tiles} | {t.r1 for t in tiles})
    edges_c = sorted({t.c0 for t in tiles} | {t.c1 for t in tiles})
    far, same = 0, 0
    for lid, sl in enumerate(ndi.find_objects(whole), 1):
        if sl is None:
            continue
        if min(abs(e - v) for e in edges_r for v in (sl[0].start, sl[0].stop)) < 24:
            continue
        if min(abs(e - v) for e in edges_c for v in (sl[1].start, sl[1].stop)) < 24:
            continue
        far += 1
        m = whole == lid
        ids, counts = np.unique(tiled[m], return_counts=True)
        j = ids[np.argmax(counts)]
        iou = counts.max() / (m.sum() + (tiled == j).sum() - counts.max())
        same += iou > 0.99
    print(f"objects away from tile edges: {far}, identical in the tiled result: {same}")
    assert far >= 30 and same >= 0.95 * far

    # no ground-truth object crossing a core border gets more IDs than untiled
    cores_r = sorted({t.core[0] for t in tiles} - {0})
    cores_c = sorted({t.core[1] for t in tiles} - {0})
    crossing, worse = 0, []
    for gid in range(1, int(gt.max()) + 1):
        rr, cc = np.nonzero(gt == gid)
        if rr.size == 0:
            continue
        if not any(rr.min() < b <= rr.max() for b in cores_r) and not any(
            cc.min() < b <= cc.max() for b in cores_c
        ):
            continue
        crossing += 1

        if n_ids(tiled, rr, cc) > n_ids(whole, rr, cc):
            worse.append(gid)
    print(f"GT objects crossing a tile border: {crossing}, split by tiling: {len(worse)}")
    assert crossing >= 20 and worse == []


def n_ids(lab, rr, cc) -> int:
    """IDs covering at least 20 % of the object at pixels (rr, cc)."""
    v = lab[rr, cc]
    ids, counts = np.unique(v[v > 0], return_counts=True)
    return int((counts >= 0.2 * rr.size).sum())


class CountingPlane:
    """A lazily backed 20000 x 20000 mosaic of the real image that counts its reads."""

    def __init__(self, img, size=20000):
        self.img, self.shape, self.dtype, self.ndim = img, (size, size), img.dtype, 2
        self.reads = []

    def __getitem__(self, key):
        rs, cs = key
        if rs.stop > rs.start and cs.stop > cs.start:  # dask probes with empty slices
            self.reads.append((rs.start, rs.stop, cs.start, cs.stop))
        r = np.arange(rs.start, rs.stop) % self.img.shape[0]
        c = np.arange(cs.start, cs.stop) % self.img.shape[1]
        return self.img[np.ix_(r, c)]


def test_click_on_huge_lazy_plane_reads_only_the_tile(nuclei):
    da = pytest.importorskip("dask.array")
    img, gt = nuclei
    backing = CountingPlane(img)
    lazy = da.from_array(backing, chunks=512, asarray=False)
    seg = Segmenter(backend="classical").set_image(lazy, contrast_limits=(0, 235))
    # a nucleus of the ground truth, in mosaic copy (20, 30)
    rr, cc = np.nonzero(gt == gt[gt > 0][len(gt[gt > 0]) // 2])
    r, c = 20 * 512 + int(np.median(rr)), 30 * 512 + int(np.median(cc))
    [pred] = predict_tiled(seg, points=[(r, c)], tile_size=1024)
    tile = pred.info["tile"]
    assert tile.shape == (1024, 1024) and tile.r0 <= r < tile.r1
    n_chunks = (20000 // 512 + 1) ** 2
    read_px = sum((b - a) * (d - c0) for a, b, c0, d in backing.reads)
    assert len(backing.reads) <= 4 < n_chunks  # the 2 x 2 chunks under the tile
    assert read_px <= 4 * 512 * 512
    mask = pred.mask
    assert mask.shape == (1024, 1024) and mask[r - tile.r0, c - tile.c0]
    # the same click on the plain 512 px image gives the same nucleus
    ref = Segmenter(backend="classical").set_image(img, contrast_limits=(0, 235))
    rm, cm = r % 512, c % 512
    [plain] = ref.predict(points=[(rm, cm)])
    local = np.zeros_like(mask)
    local[r - rm - tile.r0 : r - rm - tile.r0 + 512, c - cm - tile.c0 : c - cm - tile.c0 + 512] = (
        plain.mask
    )
    iou = (mask & local).sum() / (mask | local).sum()
    print(f"tiled click vs plain image click: IoU {iou:.3f}, {mask.sum()} px")
    assert iou > 0.8
    # a second click in the same tile: cache hit, no new read of the image
    n_reads, encodes = len(backing.reads), seg.stats.encodes
    predict_tiled(seg, points=[(r, c)], tile_size=1024)
    assert seg.stats.encodes == encodes and seg.stats.hits >= 1
    assert len(backing.reads) - n_reads <= 4  # re-read to check the content key


def test_segment_into_tiled_writes_at_plane_position(nuclei):
    img, gt = nuclei
    big = np.tile(img, (4, 4))  # 2048 x 2048
    seg = Segmenter(backend="classical").set_image(big)
    labels = np.zeros(big.shape, np.uint16)
    labels[0, 0] = 5
    rr, cc = np.nonzero(gt == gt[256, 256] if gt[256, 256] else gt == gt[gt > 0][0])
    r, c = 3 * 512 + int(np.median(rr)), 2 * 512 + int(np.median(cc))
    ids = segment_into_tiled(seg, labels, points=[(r, c)], tile_size=512)
    assert ids == [6]
    obj = np.argwhere(labels == 6)
    assert obj[:, 0].min() >= 3 * 512 - 5 and obj[:, 1].min() >= 2 * 512 - 5
    assert labels[r, c] == 6 and labels[0, 0] == 5


@pytest.mark.slow
def test_sam2_click_encodes_one_tile(sam2_random_segmenter, nuclei):
    seg = sam2_random_segmenter
    big = np.tile(nuclei[0], (2, 2))
    seg.set_image(big)
    before = seg.stats.encodes
    [p] = predict_tiled(seg, points=[(700, 300)])
    assert p.info["tile"].shape == (256, 256) and p.mask.shape == (256, 256)
    predict_tiled(seg, points=[(690, 290)])  # same lattice window: cached
    assert seg.stats.encodes - before == 1
