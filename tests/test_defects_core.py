"""Regression tests of issue 9's engine/adapter defects (1, 3, 4, 5, 7).

Each test failed on the code before the fix (see the issue for the symptoms).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends.base import Prediction
from napari_sam2.engine.edits import plan_edits
from napari_sam2.engine.labels import KEEP
from napari_sam2.engine.planes import PlaneSource
from napari_sam2.engine.prompts import ObjectPrompt, Points
from napari_sam2.io.provenance import provenance_from_json, provenance_to_json
from widget_helpers import click, discs, ready_widget, segment_and_wait

LEFT, RIGHT = (40, 40), (40, 75)


def _notices(monkeypatch):
    """Collect what the dock widget shows with show_info/show_warning/show_error."""
    from napari_sam2.widget import _notify

    seen = []
    for name in ("show_info", "show_warning", "show_error"):
        monkeypatch.setattr(_notify, name, seen.append)
    return seen


# ------------------------------------------------------------------ defect 1
def test_commit_on_an_existing_object_is_a_notice(make_napari_viewer, qtbot, monkeypatch):
    """Click an object already committed, Segment, Commit (keep): a notice naming the object,
    labels unchanged, no exception, and the next new object still gets ID 2."""
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    seen = _notices(monkeypatch)
    labels = w.session.labels_layer
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    w.commit()
    assert labels.data[LEFT] == 1
    w.next_object()
    before = labels.data.copy()
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    w.commit()  # raised TypeError: 'int' object is not iterable
    np.testing.assert_array_equal(labels.data, before)
    assert any("nothing new to write" in m.lower() and "object 1" in m for m in seen), seen
    assert "Wrote label" not in w.status.text()
    w.next_object()
    click(w.session.points_layer, RIGHT)
    segment_and_wait(qtbot, w)
    w.commit()
    assert labels.data[RIGHT] == 2  # the empty commit consumed no ID


def test_refinement_reproducing_the_object_is_a_notice(make_napari_viewer, qtbot, monkeypatch):
    """Refine object 1 with the same click: nothing changes, a notice says so, no exception."""
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    seen = _notices(monkeypatch)
    labels = w.session.labels_layer
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    w.commit()
    before = labels.data.copy()
    labels.selected_label = 1
    w.refine_check.setChecked(True)
    segment_and_wait(qtbot, w)
    # the refined mask is exactly object 1 (a model may well give back the same mask)
    w.session.result.predictions = [_pred(labels.data == 1)]
    w.commit()
    np.testing.assert_array_equal(labels.data, before)
    assert any("nothing new to write" in m.lower() and "object 1" in m for m in seen), seen


def test_session_commit_on_existing_object(make_napari_viewer, qtbot):
    """SegmentationSession.commit on a mask inside object 1 returns [] with a notice,
    writes nothing and records no provenance for a phantom ID."""
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs())
    s = w.session
    click(s.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    assert s.commit() == [1]
    s.notices.clear()
    before = s.labels_layer.data.copy()
    segment_and_wait(qtbot, w)  # the same click again
    assert s.commit() == []
    np.testing.assert_array_equal(s.labels_layer.data, before)
    assert s.notices == ["Nothing new to write: the mask lies on object 1."]
    assert sorted(s.labels_layer.metadata["napari_sam2"]["objects"]) == [1]


# ------------------------------------------------------------------ defect 3
def _pred(mask):
    return Prediction(np.asarray(mask, bool)[None], np.ones(1))


def test_plan_edits_skips_empty_edits_without_consuming_ids():
    """An object that lies on an existing object (keep) yields no edit and no ID: the next
    object gets the next free ID, and every edit changes pixels."""
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 5
    inside = np.zeros((20, 20), bool)
    inside[3:6, 3:6] = True
    new = np.zeros((20, 20), bool)
    new[12:16, 12:16] = True
    edits = plan_edits(labels, [_pred(inside), _pred(new)], (), policy=KEEP)
    assert [e.label_id for e in edits] == [6]
    assert all(e.size for e in edits)
    assert [e.object_index for e in edits] == [1]


def test_segment_into_reports_only_written_ids(classical_segmenter):
    """segment_into with one object on an existing label and one new: returns only the new
    object's ID (max + 1), not a phantom ID."""
    img = discs()
    labels = np.zeros(img.shape, np.int32)
    seg = classical_segmenter.set_image(img)
    assert seg.segment_into(labels, points=[LEFT]) == [1]
    ids = seg.segment_into(
        labels,
        objects=[
            ObjectPrompt(points=Points([LEFT], [1])),
            ObjectPrompt(points=Points([RIGHT], [1])),
        ],
    )
    assert ids == [2]
    assert labels[RIGHT] == 2 and set(np.unique(labels)) == {0, 1, 2}


def test_provenance_follows_ids_when_an_object_is_skipped(make_napari_viewer, qtbot):
    """Two objects in one commit, the first on an existing object: the prompt recorded for
    the new ID is the second object's click (not the first's, shifted by a positional zip)."""
    viewer = make_napari_viewer()
    image, w = ready_widget(viewer, discs())
    s = w.session
    w.new_shapes()
    s.shapes_layer.add_rectangles([[20, 20], [60, 60]])  # the left disc becomes object 1
    segment_and_wait(qtbot, w)
    assert s.commit() == [1]
    w.next_object()
    # two objects at once: the same box again (lies on object 1), a box on the right disc
    s.shapes_layer.add_rectangles([[[20, 20], [60, 60]], [[20, 55], [60, 95]]])
    segment_and_wait(qtbot, w)
    assert s.commit() == [2]
    objs = s.labels_layer.metadata["napari_sam2"]["objects"]
    assert sorted(objs) == [1, 2]
    assert objs[2][0]["box_rc"] == [20, 55, 60, 95]
    assert objs[1] == [{"box_rc": [20, 20, 60, 60], "plane": [], "commit": 0}]


def test_provenance_keeps_each_commits_facts(make_napari_viewer, qtbot):
    """Two commits with different contrast limits: each object's record points to a commit
    whose normalisation is the one used for it (the first is not overwritten)."""
    viewer = make_napari_viewer()
    image, w = ready_widget(viewer, discs(), contrast_limits=(0, 3000))
    s = w.session
    click(s.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    s.commit()
    w.next_object()
    image.contrast_limits = (0, 6000)
    click(s.points_layer, RIGHT)
    segment_and_wait(qtbot, w)
    s.commit()
    meta = provenance_from_json(provenance_to_json(s.labels_layer.metadata["napari_sam2"]))
    commits = meta["commits"]
    first = commits[meta["objects"][1][0]["commit"]]
    second = commits[meta["objects"][2][0]["commit"]]
    assert first["normalization"]["high"] == [3000.0]
    assert second["normalization"]["high"] == [6000.0]
    assert first["ids"] == [1] and second["ids"] == [2]


# ------------------------------------------------------------------ defect 4
def test_cache_key_exact_contrast_limits_on_small_floats():
    """Float data in 0..1e-7: contrast limits 0..1e-7 and 0..4e-7 give different plane keys
    (a rounded key reused the stale embedding)."""
    img = np.linspace(0, 1e-7, 64 * 64, dtype=np.float64).reshape(64, 64)
    a = PlaneSource(img, contrast_limits=(0.0, 1e-7))
    b = PlaneSource(img, contrast_limits=(0.0, 4e-7))
    assert a.plane_key() != b.plane_key()
    assert a.plane_key() == PlaneSource(img.copy(), contrast_limits=(0.0, 1e-7)).plane_key()


def test_segmenter_reencodes_after_small_window_change():
    """Segmenter: a changed window on small-valued float data encodes again."""
    img = np.zeros((64, 64), np.float32)
    img[20:40, 20:40] = 1e-7
    seg = Segmenter(backend="classical")
    seg.set_image(img, contrast_limits=(0.0, 1e-7))
    seg.predict(points=[(30, 30)])
    seg.set_image(img, contrast_limits=(0.0, 4e-7))
    seg.predict(points=[(30, 30)])
    assert seg.stats.encodes == 2


# ------------------------------------------------------------------ defect 5
@pytest.mark.parametrize("z_world", [1.0, 3.0, 5.0, 2.0])
def test_viewed_plane_follows_napari_at_a_half_tie(make_napari_viewer, z_world):
    """Z scale 2 next to a layer of scale 1: at world z = 1, 3, 5 the image's data z is a .5
    tie; the plugin's plane is the one napari shows (napari rounds half to even)."""
    viewer = make_napari_viewer()
    stack = np.stack([np.full((16, 16), 100 * (k + 1), np.uint16) for k in range(4)])
    viewer.add_image(np.zeros((8, 16, 16), np.uint8), name="fine")
    image, w = ready_widget(viewer, stack, scale=(2, 1, 1), name="coarse")
    viewer.dims.set_point(0, z_world)
    shown = np.asarray(image._slice.image.view)
    (z,) = w.session.viewed_plane()
    np.testing.assert_array_equal(stack[z], shown)


def test_click_at_a_half_tie_is_used_on_the_plane_shown(make_napari_viewer, qtbot):
    """Z scale 2, viewer at world z = 1 (data z 0.5): a click there is a prompt of the plane
    napari shows (0) and of no other plane; the object is written on plane 0 only."""
    viewer = make_napari_viewer()
    stack = np.stack([discs(), discs(), discs(), discs()])
    viewer.add_image(np.zeros((8, 80, 120), np.uint8), name="fine")
    image, w = ready_widget(viewer, stack, scale=(2, 1, 1), name="coarse")
    viewer.dims.set_point(0, 1.0)
    click(w.session.points_layer, (1.0, *LEFT))
    assert w.session.viewed_plane() == (0,)
    segment_and_wait(qtbot, w)
    assert w.session.commit() == [1]
    lab = w.session.labels_layer.data
    assert lab[0][LEFT] == 1 and not lab[1:].any()


# ------------------------------------------------------------------ defect 7
def test_pyproject_pins_the_tested_sam2_range():
    """pyproject.toml pins sam2 to the range the load-time guard accepts, and the installed
    sam2 lies in it."""
    import re
    from pathlib import Path

    from napari_sam2.engine.model import sam2_compat

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.findall(r'"(sam2[^"]*)"', text) == [sam2_compat.SAM2_RANGE]
    assert sam2_compat.check_sam2_version() == sam2_compat.sam2_version()


@pytest.mark.parametrize("version", ["1.5.0", "2.0", "0.4.1", "weird"])
def test_unsupported_sam2_version_is_one_clear_error_at_load(monkeypatch, version):
    """A sam2 outside the tested range: load_sam2 raises Sam2VersionError (a ModelError)
    saying which version and what to install, before anything is built."""
    from napari_sam2.engine import ModelError, Sam2VersionError
    from napari_sam2.engine.model import load, sam2_compat

    monkeypatch.setattr(sam2_compat, "sam2_version", lambda: version)
    monkeypatch.setattr(load, "build_model", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(Sam2VersionError) as info:
        load.load_sam2("tiny", random_weights=True, device="cpu", image_size=256)
    assert isinstance(info.value, ModelError)
    assert str(info.value) == (
        f"sam2 {version} is not supported, install sam2>=1.0,<1.2 (pip install 'sam2>=1.0,<1.2')."
    )


def test_sam2_without_the_private_api_is_one_clear_error(monkeypatch, sam2_random_segmenter):
    """A sam2 whose SAM2ImagePredictor lost ``_bb_feat_sizes``: building the backend raises
    Sam2VersionError naming the missing attribute (not an AttributeError in a predict)."""
    from sam2 import sam2_image_predictor

    from napari_sam2.engine import Sam2VersionError
    from napari_sam2.engine.backends.sam2 import Sam2Backend

    cls = sam2_image_predictor.SAM2ImagePredictor
    init = cls.__init__

    def renamed(self, *a, **k):
        init(self, *a, **k)
        del self._bb_feat_sizes

    monkeypatch.setattr(cls, "__init__", renamed)
    with pytest.raises(
        Sam2VersionError, match=r"sam2 1\.1\.0 is not supported, install sam2"
    ) as e:
        Sam2Backend(sam2_random_segmenter.backend.loaded)
    assert "SAM2ImagePredictor._bb_feat_sizes" in str(e.value)


def test_cli_provenance_gives_each_id_its_own_prompt(tmp_path):
    """napari-sam2 segment with two boxes: the provenance of ID 1 holds the first box and of
    ID 2 the second (not every prompt under every ID)."""
    import tifffile

    from napari_sam2.cli import main
    from napari_sam2.io import load_labels

    img = tmp_path / "discs.tif"
    tifffile.imwrite(img, discs())
    out = tmp_path / "labels.tif"
    rc = main(["segment", str(img), "--boxes", "20,20,60,60;20,55,60,95",
               "--backend", "classical", "-o", str(out)])  # fmt: skip
    assert rc == 0
    labels, info = load_labels(out)
    objs = info["provenance"]["objects"]
    assert objs[1] == [{"box_rc": [20.0, 20.0, 60.0, 60.0], "plane": []}]
    assert objs[2] == [{"box_rc": [20.0, 55.0, 60.0, 95.0], "plane": []}]
    assert labels[LEFT] == 1 and labels[RIGHT] == 2


def test_overwrite_batch_never_wipes_an_earlier_object_of_the_same_batch():
    """Two identical boxes with policy="overwrite": the second object may not take every pixel of the first, so both returned IDs exist in the labels (found by fuzzing)."""
    img = np.zeros((64, 64), np.uint16)
    img[20:40, 20:40] = 1000
    seg = Segmenter(backend="classical")
    seg.set_image(img)
    labels = np.zeros((64, 64), np.int32)
    labels[0:5, 0:5] = 9  # an existing object, which "overwrite" may take over
    box = (18, 18, 42, 42)
    ids = seg.segment_into(labels, boxes=[box, box], policy="overwrite")
    for i in ids:
        assert (labels == i).any(), f"returned ID {i} is not in the labels"
    assert ids == [10]  # the duplicate adds nothing, so it gets no ID
