"""One commit pipeline (adapter/commit.py): a plain, a tiled and a chunked commit (and the
widget's staged one) give the same IDs, notices, max-ID cache, provenance and undo step."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.adapter.commit import (
    ChunkedWriter,
    begin_commit,
    commit_preview,
    finish_job,
    nothing_new,
    plan_commit,
    plane_chunks,
)
from napari_sam2.adapter.layers import new_labels_layer, new_points_layer
from napari_sam2.adapter.session import SegmentationSession
from napari_sam2.engine import Segmenter
from widget_helpers import discs

MODES = ("plain", "tiled", "chunked", "staged")


def _session(mode):
    from napari.components import ViewerModel

    viewer = ViewerModel()
    img = viewer.add_image(discs(), name="cells")
    s = SegmentationSession(viewer, Segmenter(backend="classical"))
    s.image_layer = img
    s.points_layer = new_points_layer(viewer, img)
    s.labels_layer = new_labels_layer(viewer, img)
    s.tile_size = 64 if mode == "tiled" else None  # 80 x 120 > 64: the tiled path
    return s


def _commit(s, mode):
    if mode == "chunked":  # the one commit function, in bands
        return commit_preview(s, chunk_px=300, step_px=300)
    if mode != "staged":
        return s.commit()
    # the widget's path: the same stages, the bands written step by step
    job = plan_commit(begin_commit(s), chunk_px=300)  # several bands
    writer = ChunkedWriter(job, lambda: s.labels_version, step_px=300)
    while not writer.step():
        pass
    assert not job.chunks or writer.steps > 1
    return finish_job(s, job, writer.finish())


@pytest.mark.parametrize("mode", MODES)
def test_every_commit_path_gives_the_same_ids_notices_and_provenance(mode):
    s = _session(mode)
    lab = s.labels_layer
    lab.data[0, 0] = 65535  # the largest uint16 ID is taken: the commit widens the dtype
    s.invalidate_max()
    s.points_layer.add([40, 40])
    assert s.accept(s.compute(s.prepare()))
    assert s.result.request.tiled == (mode == "tiled")

    assert _commit(s, mode) == [65536]
    assert s.notices == [
        "Labels layer 'cells labels' widened to uint32 for more IDs "
        "(the undo history starts again)."
    ]
    assert lab.data.dtype == np.uint32 and lab.data[40, 40] == 65536 and lab.data[40, 75] == 0
    assert s.result is None and s.next_id(lab) == 65537  # the max-ID cache follows
    meta = lab.metadata["napari_sam2"]
    assert [c["ids"] for c in meta["commits"]] == [[65536]]
    assert list(meta["objects"]) == [65536] and meta["objects"][65536][0]["plane"] == []

    s.notices.clear()  # the same click again: nothing new, the same notice everywhere
    assert s.accept(s.compute(s.prepare()))
    assert _commit(s, mode) == []
    assert s.notices == ["Nothing new to write: the mask lies on object 65536."]
    assert s.result is None and len(meta["commits"]) == 1

    lab.undo()  # the commit was one undo step
    assert not (lab.data == 65536).any() and lab.data[0, 0] == 65535


def test_plane_chunks_of_a_window_are_keyed_on_the_whole_plane():
    before = np.zeros((6, 8), np.uint16)
    after = before.copy()
    after[2:4, 3:7] = 5
    chunks = plane_chunks(before, after, (1,), chunk_px=4, origin=(10, 20))
    assert [c.key[1:] for c in chunks] == [
        (slice(12, 13), slice(23, 27)),
        (slice(13, 14), slice(23, 27)),
    ]
    rows, cols = (
        np.concatenate([c.indices[1] for c in chunks]),
        np.concatenate([c.indices[2] for c in chunks]),
    )
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [
        (r, c) for r in (12, 13) for c in range(23, 27)
    ]
    assert all((c.indices[0] == 1).all() for c in chunks)


def test_nothing_new_names_the_objects_under_the_mask():
    region = np.zeros((4, 4), np.uint8)
    region[:2] = 3
    region[2:] = 7
    m = np.zeros((4, 4), bool)
    m[1:3, 1] = True
    assert nothing_new(region, [m], None) == "Nothing new to write: the mask lies on objects 3, 7."
    assert (
        nothing_new(region[:2], [m[:2]], 3)
        == "Nothing new to write: the mask is object 3 already."
    )
