"""The dock widget on planes larger than the model input: a click on a 40 000 x 30 000
multiscale (pyramid) layer reads one tile, previews and writes it in place; the
resolution picker; "Segment everything" tile by tile."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import tifffile

from napari_sam2.engine import Segmenter
from napari_sam2.widget._everything_panel import EverythingPanel
from test_tiling_napari import CENTRE, GEO, PERIOD, disc, iou, pyramid, tile_chunks
from widget_helpers import TIMEOUT, click, make_widget, segment_and_wait


def test_click_on_40k_pyramid_in_the_widget(make_napari_viewer, qtbot):
    backings, levels = pyramid()
    viewer = make_napari_viewer()
    img = viewer.add_image(levels, multiscale=True, contrast_limits=(0, 3000), name="slide", **GEO)
    w = make_widget(viewer)
    lab = w.session.labels_layer  # made by the widget, full resolution
    assert lab.data.shape == (40_000, 30_000)
    combo = w.layers_panel.level_combo
    assert combo.count() == 4 and combo.isEnabled() and w.session.level == 0
    qtbot.wait(200)  # napari's own display reads the coarse levels
    for b in backings:
        b.reset()
    click(w.session.points_layer, img.data_to_world(CENTRE))
    segment_and_wait(qtbot, w)
    p = w.session.result.info["placement"]
    # the preview is one tile, placed over it: same world position as the image pixel
    preview = w.preview.layer
    assert preview.data.shape == (2048, 2048)
    local = (CENTRE[0] - p.offset[0], CENTRE[1] - p.offset[1])
    assert preview.data[local] == 1
    np.testing.assert_allclose(preview.data_to_world(local), img.data_to_world(CENTRE))
    # even when the object counts as "large" (background commit), a tiled preview is
    # written bbox-local at once: never a copy of the whole 40k x 30k plane
    w.committer.sync_px = 0
    w.commit()
    assert not w.committer.running
    assert "Wrote label(s) 1" in w.status.text()
    assert backings[0].chunks == tile_chunks(p, (2048, 2048))
    sl, want = disc(CENTRE)
    assert iou(np.asarray(lab.data[sl]) == 1, want) > 0.95
    assert w.session.pick_label(img.data_to_world(CENTRE)) == 1
    print(f"widget 40k click: peak RSS of the test process {_peak_mb():.0f} MB")

    # a coarser level: nothing is read at full resolution
    combo.setCurrentIndex(2)
    assert w.session.level == 2
    other = (70 * PERIOD + PERIOD // 2, 50 * PERIOD + PERIOD // 2)
    for b in backings:
        b.reset()
    w.next_object()
    click(w.session.points_layer, img.data_to_world(other))
    segment_and_wait(qtbot, w)
    p2 = w.session.result.info["placement"]
    assert p2.level == 2 and w.preview.layer.data.shape == (2048, 1875)
    w.commit()
    assert not backings[0].chunks and backings[2].chunks
    sl, want = disc(other)
    got = np.asarray(lab.data[sl]) == 2
    assert got[100, 100] and iou(got, want) > 0.6
    lab.undo()
    assert not np.asarray(lab.data[sl]).any() and lab.data[CENTRE] == 1


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def mosaic(shared_data):
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    return np.hstack([img, img[:, ::-1]])  # 512 x 1024


def test_segment_everything_panel_tiles_a_large_plane(make_napari_viewer, qtbot, mosaic):
    viewer = make_napari_viewer()
    layer = viewer.add_image(mosaic, name="mosaic")
    w = make_widget(viewer)
    [p] = [p for p in w.panels if isinstance(p, EverythingPanel)]
    p.tile_size.setValue(256)  # a 512 x 1024 plane in 2 x 4 tiles
    p.tile_overlap.setValue(64)
    p.run()
    qtbot.waitUntil(lambda: not p.busy, timeout=TIMEOUT)
    expected = (
        Segmenter(backend="classical")
        .set_image(mosaic, contrast_limits=layer.contrast_limits)
        .segment_everything(tile_size=256, tile_overlap=64)
    )
    data = np.asarray(w.session.labels_layer.data)
    assert expected.max() > 50 and data.max() == expected.max()
    assert np.array_equal(data, expected)  # IDs 1..N in the same order
    assert p.progress.value() == p.progress.maximum() > 0
