"""Clicks on a 40 000 x 30 000 lazily backed plane, through the adapter session and the
dock widget: only the chunks under the tile around the click are read, the preview and
the write are tile-local, and the label lands where the user clicked (scale/translate)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from napari_sam2.adapter.session import SegmentationSession
from napari_sam2.adapter.tiles import MAX_WINDOW, Placement, level_options
from napari_sam2.engine import Segmenter

da = pytest.importorskip("dask.array")

H, W = 40_000, 30_000
CHUNK = 1024
PERIOD, RADIUS = 512, 60
FACTORS = (1, 4, 16, 64)
GEO = {"scale": (0.5, 0.25), "translate": (100.0, -50.0)}
CENTRE = (30 * PERIOD + PERIOD // 2, 40 * PERIOD + PERIOD // 2)  # a disc's centre


class LazyDiscs:
    """Bright discs (radius 60) on a 512 px lattice, computed on demand at a pyramid level
    of downsample ``factor``; records which ``CHUNK``-sized chunks are read and how many
    pixels."""

    def __init__(self, factor=1):
        self.factor = factor
        self.shape = (math.ceil(H / factor), math.ceil(W / factor))
        self.dtype, self.ndim = np.dtype(np.uint16), 2
        self.chunks, self.pixels = set(), 0

    def __getitem__(self, key):
        rs, cs = key
        rows = np.arange(*rs.indices(self.shape[0]))
        cols = np.arange(*cs.indices(self.shape[1]))
        if rows.size and cols.size:  # dask probes with empty slices
            self.pixels += rows.size * cols.size
            self.chunks |= {
                (int(a), int(b))
                for a in np.unique(rows // CHUNK)
                for b in np.unique(cols // CHUNK)
            }
        f = self.factor
        r = (rows * f + (f - 1) / 2) % PERIOD - PERIOD / 2
        c = (cols * f + (f - 1) / 2) % PERIOD - PERIOD / 2
        inside = r[:, None] ** 2 + c[None, :] ** 2 <= RADIUS**2
        return np.where(inside, 3000, 100).astype(np.uint16)

    def reset(self):
        self.chunks, self.pixels = set(), 0


def pyramid():
    backings = [LazyDiscs(f) for f in FACTORS]
    levels = [da.from_array(b, chunks=CHUNK, asarray=False, name=False) for b in backings]
    return backings, levels


def disc(centre, window=100):
    """The disc around ``centre`` on a window of +-``window`` px: (slices, mask)."""
    yy, xx = np.mgrid[-window : window + 1, -window : window + 1]
    sl = tuple(slice(v - window, v + window + 1) for v in centre)
    return sl, yy**2 + xx**2 <= RADIUS**2


def tile_chunks(p: Placement, shape) -> set:
    r0, c0 = p.offset
    return {
        (a, b)
        for a in range(r0 // CHUNK, (r0 + shape[0] - 1) // CHUNK + 1)
        for b in range(c0 // CHUNK, (c0 + shape[1] - 1) // CHUNK + 1)
    }


def iou(a, b) -> float:
    return (a & b).sum() / (a | b).sum()


def _session(viewer, segmenter):
    from napari_sam2.adapter.layers import new_points_layer

    backings, levels = pyramid()
    img = viewer.add_image(levels, multiscale=True, contrast_limits=(0, 3000), **GEO)
    s = SegmentationSession(viewer, segmenter)
    s.image_layer = img
    s.points_layer = new_points_layer(viewer, img)
    s.labels_layer = viewer.add_labels(np.zeros((H, W), np.uint8), **GEO)
    return backings, img, s


def _click(s, img, centre):
    pts = s.points_layer
    pts.data = np.empty((0, 2))
    pts.add(pts.world_to_data(img.data_to_world(centre)))


def test_session_click_on_40k_plane_reads_one_tile_and_writes_its_bbox():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    backings, img, s = _session(viewer, Segmenter(backend="classical"))
    _click(s, img, CENTRE)
    for b in backings:
        b.reset()
    tracemalloc.start()
    req = s.prepare()
    res = s.compute(req)
    assert s.accept(res)
    ids = s.commit()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    p = res.info["placement"]
    [pred] = res.predictions
    print(
        f"40k x 30k click: level-0 chunks read {len(backings[0].chunks)} of "
        f"{math.ceil(H / CHUNK) * math.ceil(W / CHUNK)}, {backings[0].pixels} px; "
        f"peak traced memory {peak / 1e6:.1f} MB"
    )
    assert req.tiled and pred.mask.shape == (2048, 2048) and p.factor == (1.0, 1.0)
    r0, c0 = p.offset
    assert r0 <= CENTRE[0] < r0 + 2048 and c0 <= CENTRE[1] < c0 + 2048
    assert backings[0].chunks == tile_chunks(p, (2048, 2048)) and len(backings[0].chunks) == 4
    assert backings[0].pixels == 2048 * 2048  # read once: the key and the input share it
    assert all(not b.chunks for b in backings[1:])
    assert peak < 200e6  # bounded by the tile (a full-plane float copy: 14 GB)
    # the label is the clicked disc, at the clicked world position, and nothing else
    assert ids == [1]
    lab = s.labels_layer
    sl, want = disc(CENTRE)
    assert iou(np.asarray(lab.data[sl]) == 1, want) > 0.95
    assert np.count_nonzero(lab.data) == (np.asarray(lab.data[sl]) == 1).sum()
    world = img.data_to_world(CENTRE)
    np.testing.assert_allclose(world, (100 + 0.5 * CENTRE[0], -50 + 0.25 * CENTRE[1]))
    assert s.pick_label(world) == 1
    lab.undo()  # one undo step
    assert not np.asarray(lab.data[sl]).any()


def test_session_coarser_level_reads_that_level_only():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    backings, img, s = _session(viewer, Segmenter(backend="classical"))
    assert [k for _, k in level_options(img)] == [0, 1, 2, 3]
    s.level = 2  # 1/16: 2500 x 1875
    centre = (60 * PERIOD + PERIOD // 2, 10 * PERIOD + PERIOD // 2)
    _click(s, img, centre)
    for b in backings:
        b.reset()
    res = s.compute(s.prepare())
    s.accept(res)
    assert s.commit() == [1]
    p = res.info["placement"]
    assert p.level == 2 and p.factor == (16.0, 16.0)
    assert not backings[0].chunks and not backings[1].chunks and backings[2].chunks
    assert backings[2].chunks == tile_chunks(p, res.predictions[0].mask.shape)
    sl, want = disc(centre)
    got = np.asarray(s.labels_layer.data[sl]) == 1
    assert got[100, 100] and iou(got, want) > 0.6  # 16 px blocks
    assert np.count_nonzero(s.labels_layer.data) == got.sum()


def test_big_box_is_read_strided_and_bounded():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    backings, img, s = _session(viewer, Segmenter(backend="classical"))
    s.shapes_layer = viewer.add_shapes(**GEO)
    box = np.array([[20_000, 10_000], [20_000, 20_000], [30_000, 20_000], [30_000, 10_000]])
    s.shapes_layer.add_rectangles(box)
    s.points_layer.data = np.empty((0, 2))
    for b in backings:
        b.reset()
    tracemalloc.start()
    res = s.compute(s.prepare())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    p = res.info["placement"]
    stride = math.ceil(10_000 / (MAX_WINDOW * 2048))
    assert p.stride == stride and p.factor == (stride, stride)
    inside = {(a, b) for a in range(19, 30) for b in range(9, 20)}
    assert backings[0].chunks <= inside
    # the strided chunks under the window (dask reads each strided chunk whole)
    assert backings[0].pixels < 1.5 * (10_000 / stride) ** 2
    print(f"10k px box: stride {stride}, peak traced memory {peak / 1e6:.1f} MB")
    assert peak < 400e6
    mask = res.predictions[0].mask
    window, full = p.full_window(mask)
    assert window[0].start >= 19_990 and window[0].stop <= 30_010
    assert full.shape == (window[0].stop - window[0].start, window[1].stop - window[1].start)


def test_sam2_random_weights_tile_plumbing(sam2_random_segmenter):
    from napari.components import ViewerModel

    seg = sam2_random_segmenter
    viewer = ViewerModel()
    backings, img, s = _session(viewer, seg)
    _click(s, img, CENTRE)
    for b in backings:
        b.reset()
    encodes = seg.stats.encodes
    res = s.compute(s.prepare())
    p = res.info["placement"]
    [pred] = res.predictions
    assert pred.candidates.shape == (3, 256, 256)  # the model input: one tile
    assert p.offset[0] <= CENTRE[0] < p.offset[0] + 256
    assert backings[0].chunks == tile_chunks(p, (256, 256)) and len(backings[0].chunks) <= 4
    assert seg.stats.encodes == encodes + 1
    res2 = s.compute(s.prepare())  # same tile: cached embedding
    assert seg.stats.encodes == encodes + 1 and res2.info["placement"] == p
    s.accept(res2)
    # the seeded random weights give masks: commit the largest candidate
    areas = [int(c.sum()) for c in pred.candidates]
    assert max(areas) > 0, areas
    res2.candidate = int(np.argmax(areas))
    ids = s.commit()
    lab = s.labels_layer
    r0, c0 = p.offset
    assert ids == [1]
    tile = np.asarray(lab.data[r0 : r0 + 256, c0 : c0 + 256])
    assert np.count_nonzero(lab.data) == np.count_nonzero(tile)  # only inside the tile
    np.testing.assert_array_equal(tile == 1, res2.masks()[0])  # level 0, stride 1


def test_placement_upsamples_blocks_and_places_the_preview():
    from napari.components import ViewerModel

    from napari_sam2.adapter.preview import PreviewLayer

    p = Placement(offset=(10, 20), factor=(4.0, 4.0), plane_shape=(100, 200), level=2)
    m = np.zeros((8, 8), bool)
    m[1, 2] = m[2, 2] = True
    window, full = p.full_window(m)
    # level pixel (11, 22) covers full-resolution rows 44..47, cols 88..91
    assert window == (slice(44, 52), slice(88, 92)) and full.all()
    edge = Placement(offset=(0, 0), factor=(4.0, 4.0), plane_shape=(30, 30))
    m = np.zeros((8, 8), bool)
    m[7, 7] = True
    assert edge.full_window(m)[0] == (slice(28, 30), slice(28, 30))  # clipped to the plane

    viewer = ViewerModel()
    img = viewer.add_image(
        np.zeros((100, 200)), rotate=30.0, scale=(0.5, 0.7), translate=(5.0, -3.0)
    )
    preview = PreviewLayer(viewer)
    tile = np.zeros((8, 8), bool)
    tile[3, 5] = True
    preview.show(img, [tile], p)
    assert preview.data.shape == (8, 8)
    f = np.array(p.factor)
    for q in ((0, 0), (3, 5), (7, 2)):
        full_res = (np.add(p.offset, q)) * f + (f - 1) / 2  # the centre of its block
        np.testing.assert_allclose(
            preview.layer.data_to_world(q), img.data_to_world(full_res), atol=1e-9
        )


def test_mask_prompts_fall_back_or_are_refused():
    from napari.components import ViewerModel

    from napari_sam2.engine.errors import PromptError

    viewer = ViewerModel()
    backings, img, s = _session(viewer, Segmenter(backend="classical"))
    _click(s, img, CENTRE)
    s.refine = True  # refining reads the labels plane: refused before any read
    s.labels_layer.selected_label = 1
    with pytest.raises(PromptError, match="not supported on large planes"):
        s.prepare()
    assert not backings[0].chunks

    # a 2500 px plane (> the 2048 px tile): a polygon prompt runs on the whole plane
    viewer = ViewerModel()
    yy, xx = np.mgrid[:2500, :2500]
    plane = np.where((yy - 1800) ** 2 + (xx - 700) ** 2 <= 80**2, 3000, 100).astype(np.uint16)
    img = viewer.add_image(plane, contrast_limits=(0, 3000))
    s = SegmentationSession(viewer, Segmenter(backend="classical"))
    s.image_layer = img
    s.labels_layer = viewer.add_labels(np.zeros(plane.shape, np.uint16))
    s.shapes_layer = viewer.add_shapes()
    s.shapes_layer.add_polygons([[[1750, 650], [1750, 750], [1850, 750], [1850, 650]]])
    req = s.prepare()
    assert not req.tiled
    s.shapes_layer.data = []
    s.shapes_layer.add_rectangles([[1700, 600], [1900, 800]])
    req = s.prepare()
    assert req.tiled
    s.accept(s.compute(req))
    assert s.commit() == [1] and s.labels_layer.data[1800, 700] == 1
