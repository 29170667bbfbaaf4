"""The scripted API takes the tiled path by itself on planes larger than the model input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.auto_tile import tile_size_for
from napari_sam2.engine.backends.classical import ClassicalBackend

PERIOD, RADIUS = 64, 14


def discs(h, w, dtype=np.uint8):
    rr, cc = np.mgrid[:h, :w]
    r, c = rr % PERIOD - PERIOD / 2, cc % PERIOD - PERIOD / 2
    return np.where(r**2 + c**2 <= RADIUS**2, 200, 20).astype(dtype)


class CountingReads:
    """A lazily computed plane that records the pixels it hands out."""

    def __init__(self, shape):
        self.shape, self.dtype, self.ndim = shape, np.dtype(np.uint8), 2
        self.pixels = 0

    def __getitem__(self, key):
        rs, cs = key
        rows = np.arange(*rs.indices(self.shape[0]))
        cols = np.arange(*cs.indices(self.shape[1]))
        self.pixels += rows.size * cols.size
        r = rows[:, None] % PERIOD - PERIOD / 2
        c = cols[None, :] % PERIOD - PERIOD / 2
        return np.where(r**2 + c**2 <= RADIUS**2, 200, 20).astype(np.uint8)


def small_tile_segmenter(size=128):
    backend = ClassicalBackend()
    backend.image_size = size  # the "model input": planes larger than this are tiled
    return Segmenter(predictor=backend)


def test_auto_decision():
    seg = Segmenter(backend="classical")  # input size 2048
    assert tile_size_for(seg, (2048, 1000), None) is None
    assert tile_size_for(seg, (2049, 10), None) == 2048
    assert tile_size_for(seg, (4000, 4000), False) is None
    assert tile_size_for(seg, (100, 100), True) == 2048
    assert tile_size_for(seg, (300, 300), 128) == 128
    with pytest.raises(ValueError, match="tile"):
        tile_size_for(seg, (300, 300), -1)


def test_predict_on_a_large_plane_is_bbox_local_and_matches_the_whole_plane():
    img = discs(320, 448)
    seg = Segmenter(backend="classical").set_image(img, contrast_limits=(0, 255))
    click = (3 * PERIOD + 32, 5 * PERIOD + 32)
    [whole] = seg.predict(points=[click], multimask=False, tile=False)
    [tiled] = seg.predict(points=[click], multimask=False, tile=128)
    assert whole.offset == (0, 0) and whole.mask.shape == img.shape
    assert tiled.mask.shape == (2 * RADIUS + 1, 2 * RADIUS + 1)  # the disc's box only
    assert tiled.offset == (click[0] - RADIUS, click[1] - RADIUS)
    assert tiled.info["tile"].shape == (128, 128)
    np.testing.assert_array_equal(tiled.plane_mask(img.shape), whole.mask)


def test_lazy_plane_is_read_around_the_click_only():
    da = pytest.importorskip("dask.array")
    backing = CountingReads((4096, 4096))
    lazy = da.from_array(backing, chunks=512, asarray=False, name=False)
    seg = Segmenter(backend="classical").set_image(lazy, contrast_limits=(0, 255))
    backing.pixels = 0
    click = (40 * PERIOD + 32, 20 * PERIOD + 32)
    [pred] = seg.predict(points=[click])  # default: tiled (plane > 2048)
    assert pred.plane_mask((4096, 4096))[click]
    r0, c0 = pred.offset
    assert pred.mask[click[0] - r0, click[1] - c0]
    assert pred.mask.sum() == pytest.approx(np.pi * RADIUS**2, rel=0.1)
    assert backing.pixels <= (2048 + 1024) ** 2  # the tile's chunks (~1/4 of the plane)


def test_segment_into_writes_the_box_only_with_ids_and_refinement():
    img = discs(320, 448)
    seg = Segmenter(backend="classical").set_image(img, contrast_limits=(0, 255))
    labels = np.zeros(img.shape, np.int32)
    labels[0, 0] = 7  # existing object: new IDs from 8
    a, b = (PERIOD + 32, PERIOD + 32), (3 * PERIOD + 32, 6 * PERIOD + 32)
    ids = seg.segment_into(labels, points=[a], tile=128)
    ids += seg.segment_into(labels, points=[b], tile=128)
    assert ids == [8, 9]
    assert labels[a] == 8 and labels[b] == 9
    assert (labels == 8).sum() == pytest.approx(np.pi * RADIUS**2, rel=0.1)
    # refinement: a box on the disc's top half replaces object 8 by that half
    box = (a[0] - RADIUS - 2, a[1] - RADIUS - 2, a[0] - 1, a[1] + RADIUS + 2)
    assert seg.segment_into(labels, boxes=[box], label_id=8, replace=True, tile=128) == [8]
    assert labels[a[0] - 5, a[1]] == 8 and labels[a[0] + 5, a[1]] == 0
    assert np.unique(labels).tolist() == [0, 7, 8, 9]


def test_tile_false_keeps_whole_plane_masks():
    seg = small_tile_segmenter()
    img = discs(300, 300)
    seg.set_image(img, contrast_limits=(0, 255))
    [p] = seg.predict(points=[(96, 96)], multimask=False, tile=False)
    assert p.mask.shape == img.shape and "offset" not in p.info


def test_propagate_on_tiled_planes_matches_whole_planes():
    stack = np.stack([np.roll(discs(300, 300), 2 * k, axis=1) for k in range(4)])
    out = []
    for seg in (small_tile_segmenter(128), small_tile_segmenter(4096)):
        seg.set_image(stack, contrast_limits=(0, 255))
        labels = np.zeros(stack.shape, np.int32)
        seg.segment_into(labels, (0,), points=[(160, 160)], multimask=False)
        report = seg.propagate(labels, (0,), direction="forward")
        assert report.objects[1].stopped["forward"] == "end"
        out.append(labels)
    np.testing.assert_array_equal(out[0], out[1])
    assert (out[0][3] == 1).sum() > 0.9 * np.pi * RADIUS**2
