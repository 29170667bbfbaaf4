"""The scripted API with the deterministic classical backend as oracle; the embedding cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2.engine import ClassicalBackend, EmbeddingCache, Segmenter
from napari_sam2.engine.backends.base import Prediction, Predictor
from napari_sam2.engine.backends.factory import CLASSICAL_NOTICE
from napari_sam2.engine.cache.memory import nbytes_of
from napari_sam2.engine.edits import plan_edits
from napari_sam2.engine.errors import CheckpointNotFoundError, ImageError, LabelsError, PromptError
from napari_sam2.engine.prompts import Box, ObjectPrompt, Points

H, W = 80, 100  # non-square on purpose: a swapped axis shows up as a wrong shape
# rectangle A sits off the diagonal: its transpose (rows<->cols) is background
A = (slice(10, 26), slice(55, 86))
B = (slice(45, 61), slice(30, 46))
A_CLICK = (17, 70)


def _scene(dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = 0.1 + 0.02 * rng.standard_normal((H, W))
    img[A] = 0.9
    img[B] = 0.8
    return img.astype(dtype)


def _region(sl) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[sl] = True
    return m


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _discs():
    """Two touching bright discs; the slice (row 32) through both centres."""
    yy, xx = np.mgrid[:64, :96]
    a = (yy - 32) ** 2 + (xx - 30) ** 2 < 144
    b = (yy - 32) ** 2 + (xx - 52) ** 2 < 144
    img = np.full((64, 96), 0.1, np.float32)
    img[a | b] = 0.9
    assert (a & b).any()  # they overlap/touch
    return img, a & ~b, b & ~a


# -------------------------------------------------------------------- construction
def test_auto_without_checkpoint_uses_classical_with_notice(no_checkpoints, caplog):
    with caplog.at_level("WARNING"):
        seg = Segmenter(backend="auto")
    assert isinstance(seg.backend, ClassicalBackend)
    assert seg.notice == CLASSICAL_NOTICE
    assert seg.notice and "classical" in seg.notice and "checkpoint" in seg.notice
    assert any("classical" in r.getMessage() for r in caplog.records)
    assert seg.describe()["backend"] == "classical"


def test_sam2_without_checkpoint_raises(no_checkpoints):
    with pytest.raises(CheckpointNotFoundError, match="sam2.1_hiera_tiny.pt"):
        Segmenter("tiny", backend="sam2", device="cpu")


def test_auto_with_missing_explicit_checkpoint_raises(no_checkpoints):
    """A checkpoint the user named is never silently replaced by the classical backend."""
    with pytest.raises(CheckpointNotFoundError, match="sam2.1_hiera_small.pt"):
        Segmenter("small", checkpoint=no_checkpoints / "missing.pt", device="cpu")


def test_explicit_classical_has_no_notice():
    seg = Segmenter(backend="classical")
    assert isinstance(seg.backend, ClassicalBackend) and seg.notice is None


def test_bad_backend_name():
    with pytest.raises(ValueError, match="backend"):
        Segmenter(backend="sam3")


def test_classical_backend_satisfies_protocol():
    assert isinstance(ClassicalBackend(), Predictor)


def test_predict_before_set_image(classical_segmenter):
    with pytest.raises(ImageError, match="set_image"):
        classical_segmenter.predict(points=[(1, 1)])


# ---------------------------------------------------------- coordinates (row, col)
def test_click_row_col_labels_that_object_not_its_transpose(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    a = _region(A)
    [pred] = seg.predict(points=[A_CLICK])
    assert pred.mask.shape == (H, W) and pred.mask.dtype == bool
    assert _iou(pred.mask, a) > 0.9

    r, c = A_CLICK
    assert not a[c, r]  # the transposed click is background...
    [swapped] = seg.predict(points=[(c, r)])
    assert (swapped.mask & a).sum() == 0  # ...and does not pick the rectangle

    labels = np.zeros((H, W), np.int32)
    assert seg.segment_into(labels, points=[A_CLICK]) == [1]
    assert _iou(labels == 1, a) > 0.9
    t = np.zeros((H, W), np.int32)
    seg.segment_into(t, points=[(c, r)])
    assert (t[a] == 0).all()


def test_box_row_col(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    [pred] = seg.predict(boxes=[(5, 50, 30, 90)])  # (r0, c0, r1, c1) around A
    assert _iou(pred.mask, _region(A)) > 0.9
    [other] = seg.predict(boxes=[(50, 5, 90, 30)])  # its transpose does not hold A
    assert (other.mask & _region(A)).sum() == 0


# ------------------------------------------------------------------- predictions
def test_candidates_and_scores(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    [click] = seg.predict(points=[A_CLICK])
    assert click.candidates.shape == (3, H, W) and click.candidates.dtype == bool
    assert click.scores.shape == (3,)
    assert np.all(np.diff(click.scores) <= 0)
    assert click.score == click.scores[0]
    np.testing.assert_array_equal(click.mask, click.candidates[0])
    [box] = seg.predict(boxes=[(5, 50, 30, 90)])
    assert box.candidates.shape == (1, H, W) and box.scores.shape == (1,)
    [one] = seg.predict(points=[A_CLICK], multimask=False)
    assert one.candidates.shape == (1, H, W)
    [many] = seg.predict(boxes=[(5, 50, 30, 90)], multimask=True)
    assert many.candidates.shape == (3, H, W)


def test_classical_box_with_a_click_outside_it_is_not_empty(classical_segmenter):
    """A positive click outside the single box (it joins the box's object) used to make the
    classical object empty; the box now decides, as with the box alone."""
    seg = classical_segmenter.set_image(_scene())
    [alone] = seg.predict(boxes=[(5, 50, 30, 90)])
    [both] = seg.predict(points=[(50, 35)], boxes=[(5, 50, 30, 90)])  # click on B
    assert _iou(alone.mask, _region(A)) > 0.8
    np.testing.assert_array_equal(both.mask, alone.mask)
    [inside] = seg.predict(points=[A_CLICK, (50, 35)], boxes=[(5, 50, 30, 90)])
    assert _iou(inside.mask, _region(A)) > 0.8


def test_batched_boxes_one_result_each_in_order(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    preds = seg.predict(boxes=[(40, 25, 65, 50), (5, 50, 30, 90)])
    assert len(preds) == 2 and all(isinstance(p, Prediction) for p in preds)
    assert _iou(preds[0].mask, _region(B)) > 0.9
    assert _iou(preds[1].mask, _region(A)) > 0.9
    assert (preds[0].prompt.box.r0, preds[1].prompt.box.r0) == (40, 5)


def test_objects_form(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    objs = [
        ObjectPrompt(points=Points([A_CLICK], [1])),
        ObjectPrompt(box=Box(40, 25, 65, 50)),
    ]
    a, b = seg.predict(objects=objs)
    assert _iou(a.mask, _region(A)) > 0.9 and _iou(b.mask, _region(B)) > 0.9


@pytest.mark.parametrize("split_touching", [True, False])
def test_negative_point_excludes_the_touching_neighbour(split_touching):
    img, a, b = _discs()
    seg = Segmenter(predictor=ClassicalBackend(split_touching=split_touching)).set_image(img)
    [pred] = seg.predict(points=[(32, 26), (32, 56)], point_labels=[1, 0])
    assert pred.mask[a].mean() > 0.95
    assert pred.mask[b].mean() < 0.05
    assert not pred.mask[32, 56]


def test_without_negative_point_the_pair_is_one_object():
    """The negative point is what separates the discs when splitting is off."""
    img, a, b = _discs()
    seg = Segmenter(predictor=ClassicalBackend(split_touching=False)).set_image(img)
    [pred] = seg.predict(points=[(32, 26)])
    assert pred.mask[a].mean() > 0.95 and pred.mask[b].mean() > 0.95


def test_mask_prompt_refines(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    a = _region(A)
    rough = np.zeros((H, W), bool)
    rough[7:29, 52:89] = True  # a loose outline of A, spilling onto background
    [pred] = seg.predict(masks=rough)
    assert _iou(pred.mask, a) > 0.95
    tight = np.zeros((H, W), bool)
    tight[11:25, 56:85] = True  # one pixel short of A on every side
    [pred] = seg.predict(masks=tight)
    assert _iou(pred.mask, a) > 0.95


# ------------------------------------------------------------------ prompt errors
def test_point_outside_names_the_point(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    with pytest.raises(PromptError) as info:
        seg.predict(points=[(17, 70), (85, 12)])
    assert "row=85" in str(info.value) and "col=12" in str(info.value)
    assert f"{H}x{W}" in str(info.value)
    with pytest.raises(PromptError, match="col=-3"):
        seg.predict(points=[(5, -3)])


def test_box_outside_is_an_error_and_partial_box_is_clipped(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    with pytest.raises(PromptError, match="outside"):
        seg.predict(boxes=[(100, 120, 130, 150)])
    [pred] = seg.predict(boxes=[(5, 50, 30, 200)])
    assert pred.prompt.box.c1 == W - 1


@pytest.mark.parametrize(
    "prompts",
    [{}, {"points": []}, {"boxes": np.empty((0, 4))}, {"objects": []}],
)
def test_empty_prompts(classical_segmenter, prompts):
    seg = classical_segmenter.set_image(_scene())
    with pytest.raises(PromptError, match="No prompt"):
        seg.predict(**prompts)


def test_only_negative_points(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    with pytest.raises(PromptError, match="Only negative"):
        seg.predict(points=[(17, 70), (50, 40)], point_labels=[0, 0])


def test_bad_plane_index(classical_segmenter):
    seg = classical_segmenter.set_image(np.stack([_scene()] * 2))
    with pytest.raises(ImageError):
        seg.predict(plane=(2,), points=[A_CLICK])


# --------------------------------------------------------------------- segment_into
def test_new_ids_are_max_plus_one_and_consecutive(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    labels = np.zeros((H, W), np.int32)
    labels[75:, :5] = 41
    assert seg.segment_into(labels, points=[A_CLICK]) == [42]
    labels[labels == 42] = 0
    ids = seg.segment_into(labels, boxes=[(5, 50, 30, 90), (40, 25, 65, 50)])
    assert ids == [42, 43]
    assert _iou(labels == 42, _region(A)) > 0.9
    assert _iou(labels == 43, _region(B)) > 0.9
    assert (labels[75:, :5] == 41).all()
    # the next click continues after the current max
    labels[A] = 0
    assert seg.segment_into(labels, points=[A_CLICK]) == [44]


def _pred(mask) -> Prediction:
    return Prediction(mask[None], np.array([1.0]))


def test_batched_overlapping_objects_keep_policy():
    """Objects of one batch overlap: with keep, the earlier object keeps its pixels."""
    labels = np.zeros((H, W), np.int32)
    first = _region((slice(10, 30), slice(10, 30)))
    second = _region((slice(20, 40), slice(20, 40)))
    edits = plan_edits(labels, [_pred(first), _pred(second)], ())
    for e in edits:  # planned against the same labels, applied in order
        labels[e.indices] = e.values
    assert [e.label_id for e in edits] == [1, 2]
    np.testing.assert_array_equal(labels == 1, first)
    np.testing.assert_array_equal(labels == 2, second & ~first)

    labels[:] = 0
    for e in plan_edits(labels, [_pred(first), _pred(second)], (), policy="overwrite"):
        labels[e.indices] = e.values
    np.testing.assert_array_equal(labels == 2, second)
    np.testing.assert_array_equal(labels == 1, first & ~second)


def test_batched_identical_objects_get_one_id(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    labels = np.zeros((H, W), np.int32)
    ids = seg.segment_into(labels, boxes=[(5, 50, 30, 90), (5, 50, 30, 90)])
    assert ids == [1]  # nothing left for the second: no empty ID is handed out
    assert _iou(labels == 1, _region(A)) > 0.9


def test_keep_others_policy(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    labels = np.zeros((H, W), np.int32)
    labels[10:26, 55:70] = 7  # the left half of A already belongs to object 7
    [lid] = seg.segment_into(labels, points=[(17, 80)])
    assert lid == 8
    assert (labels[10:26, 55:70] == 7).all()
    assert (labels[10:26, 70:86] == 8).mean() > 0.95
    labels2 = np.zeros((H, W), np.int32)
    labels2[10:26, 55:70] = 7
    [lid] = seg.segment_into(labels2, points=[(17, 80)], policy="overwrite")
    assert lid == 8 and (labels2 == 7).sum() == 0
    assert _iou(labels2 == 8, _region(A)) > 0.9


def test_replace_refines_and_keeps_id(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    labels = np.zeros((H, W), np.int32)
    labels[20:40, 60:75] = 3  # a wrong first attempt at A, spilling below it
    labels[0:2, 0:2] = 9
    old_outside = (labels == 3) & ~_region(A)
    assert old_outside.any()
    ids = seg.segment_into(labels, points=[A_CLICK], label_id=3, replace=True)
    assert ids == [3]
    assert _iou(labels == 3, _region(A)) > 0.9
    assert (labels[old_outside] == 0).all()
    assert (labels[0:2, 0:2] == 9).all()
    assert labels.max() == 9  # no new ID


def test_label_id_only_for_one_object(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    with pytest.raises(LabelsError, match="single object"):
        seg.segment_into(
            np.zeros((H, W), np.int32), boxes=[(5, 50, 30, 90), (40, 25, 65, 50)], label_id=3
        )


def test_edits_touch_only_the_bbox(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    labels = np.zeros((H, W), np.int32)
    preds = seg.predict(points=[A_CLICK])
    [edit] = plan_edits(labels, preds, ())
    rows, cols = np.nonzero(preds[0].mask)
    assert edit.indices[0].min() >= rows.min() and edit.indices[0].max() <= rows.max()
    assert edit.indices[1].min() >= cols.min() and edit.indices[1].max() <= cols.max()
    assert edit.size == int(preds[0].mask.sum())
    assert edit.indices[0].max() < 30 and edit.indices[1].min() >= 50


def test_segment_into_a_stack_plane(classical_segmenter):
    stack = np.stack([np.full((H, W), 0.1, np.float32), _scene(), _scene()])
    seg = classical_segmenter.set_image(stack)
    labels = np.zeros((3, H, W), np.int32)
    labels[0, 0, 0] = 5
    assert seg.segment_into(labels, plane=(1,), points=[A_CLICK]) == [6]
    assert (labels[2] == 0).all() and labels[0].sum() == 5
    assert _iou(labels[1] == 6, _region(A)) > 0.9
    # plan_edits with start_id (callers that track the max label themselves)
    preds = seg.predict(plane=(2,), boxes=[(5, 50, 30, 90), (40, 25, 65, 50)])
    edits = plan_edits(labels, preds, (2,), start_id=100)
    assert [e.label_id for e in edits] == [100, 101]
    assert all((e.indices[0] == 2).all() for e in edits)


@pytest.mark.parametrize(
    "shape", [(H, W + 1), (W, H), (2, H, W)], ids=["wider", "transposed", "extra-axis"]
)
def test_labels_shape_mismatch(classical_segmenter, shape):
    seg = classical_segmenter.set_image(_scene())
    with pytest.raises(LabelsError, match="do not match"):
        seg.segment_into(np.zeros(shape, np.int32), points=[A_CLICK])


def test_float_labels_rejected(classical_segmenter):
    seg = classical_segmenter.set_image(_scene())
    with pytest.raises(LabelsError, match="integer"):
        seg.segment_into(np.zeros((H, W), np.float32), points=[A_CLICK])


def test_uint16_image_end_to_end():
    """A dim 16-bit image (values < 1000 in uint16) segments like its float version."""
    img = (_scene(np.float64) * 900).astype(np.uint16)
    seg = Segmenter(backend="classical").set_image(img)
    [pred] = seg.predict(points=[A_CLICK])
    assert _iou(pred.mask, _region(A)) > 0.9
    d = seg.describe()
    assert d["normalization"]["source"] == "percentiles"
    assert d["cache"]["encodes"] == 1


# ------------------------------------------------------------------------- cache
class CountingPredictor(ClassicalBackend):
    def __init__(self):
        super().__init__()
        self.encoded: list[float] = []

    def encode(self, image, cancel=None):
        self.encoded.append(float(image.sum()))
        return super().encode(image)


def test_second_predict_on_same_plane_does_not_encode():
    pred = CountingPredictor()
    seg = Segmenter(predictor=pred).set_image(np.stack([_scene(), _scene()[::-1]]))
    seg.predict(plane=(0,), points=[A_CLICK])
    assert seg.stats.encodes == 1 and len(pred.encoded) == 1 and seg.stats.hits == 0
    seg.predict(plane=(0,), boxes=[(5, 50, 30, 90)])
    seg.predict(plane=0, points=[A_CLICK])
    assert seg.stats.encodes == 1 and len(pred.encoded) == 1
    assert seg.stats.hits == 2
    assert seg.is_encoded((0,)) and not seg.is_encoded((1,))
    seg.predict(plane=(1,), points=[(30, 30)])  # another plane: encode again
    assert seg.stats.encodes == 2 and len(pred.encoded) == 2
    seg.predict(plane=(0,), points=[A_CLICK])
    assert seg.stats.encodes == 2 and seg.stats.hits == 3


def test_changed_pixel_is_reencoded():
    img = _scene()
    seg = Segmenter(backend="classical").set_image(img)
    seg.predict(points=[A_CLICK])
    img[40, 40] = 0.5  # edited in place (as napari does)
    seg.predict(points=[A_CLICK])
    assert seg.stats.encodes == 2


def test_same_content_new_array_is_a_hit():
    img = _scene()
    seg = Segmenter(backend="classical").set_image(img)
    seg.predict(points=[A_CLICK])
    seg.set_image(img.copy())
    seg.predict(points=[A_CLICK])
    assert seg.stats.encodes == 1 and seg.stats.hits == 1
    seg.set_image(img, contrast_limits=(0, 2))  # another window: another SAM input
    seg.predict(points=[A_CLICK])
    assert seg.stats.encodes == 2


def test_segmenter_cache_evicts_least_recently_used():
    one = nbytes_of(ClassicalBackend().encode(np.zeros((H, W, 3), np.float32)))
    seg = Segmenter(backend="classical", cache_bytes=int(2.5 * one))
    seg.set_image(np.stack([_scene(), _scene() * 0.5, _scene() * 0.25]))
    for z in (0, 1, 0, 2):  # 0 was used after 1: 1 is the least recently used
        seg.predict(plane=(z,), points=[A_CLICK])
    assert seg.stats.encodes == 3 and seg.stats.evictions == 1
    assert seg.is_encoded((0,)) and seg.is_encoded((2,)) and not seg.is_encoded((1,))
    assert seg.cache.nbytes <= seg.cache.max_bytes


def test_embedding_cache_lru_by_bytes():
    c = EmbeddingCache(max_bytes=300)
    blob = np.zeros(100, np.uint8)
    c.put("a", blob)
    c.put("b", blob.copy())
    c.put("c", blob.copy())
    assert len(c) == 3 and c.nbytes == 300
    assert c.get("a") is blob  # "a" is now the most recently used
    c.put("d", blob.copy())
    assert "b" not in c and {"a", "c", "d"} <= set(c._items)
    assert c.stats.evictions == 1 and c.nbytes == 300
    c.put("e", np.zeros(250, np.uint8))  # needs the room of three entries
    assert list(c._items) == ["e"] and c.stats.evictions == 4
    assert c.get("a") is None
    assert c.stats.hits == 1


def test_embedding_cache_oversized_and_replace():
    c = EmbeddingCache(max_bytes=100)
    c.put("big", np.zeros(101, np.uint8))
    assert len(c) == 0 and c.nbytes == 0
    c.put("k", np.zeros(40, np.uint8))
    c.put("k", np.zeros(60, np.uint8))
    assert len(c) == 1 and c.nbytes == 60
    c.put("n", object(), nbytes=30)
    assert c.nbytes == 90
    c.clear()
    assert len(c) == 0 and c.nbytes == 0


def test_nbytes_of_nested():
    torch = pytest.importorskip("torch")
    emb = {
        "image_embed": torch.zeros(1, 4, 8, 8),
        "high_res_feats": [torch.zeros(2, 2, dtype=torch.float16), np.zeros(10, np.float64)],
        "orig_hw": (10, 10),
    }
    assert nbytes_of(emb) == 4 * 256 + 2 * 4 + 80


def test_embedding_cache_is_thread_safe():
    c = EmbeddingCache(max_bytes=50 * 8)
    errors = []

    def work(offset):
        try:
            for i in range(300):
                c.put((offset, i % 80), np.zeros(8, np.uint8))
                c.get((offset, (i * 7) % 80))
        except Exception as e:  # pragma: no cover - only on failure
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert c.nbytes == 8 * len(c) <= c.max_bytes


class _CountingStack:
    """A lazy-array stand-in that counts the plane reads (dask/zarr cost I/O per read)."""

    def __init__(self, data):
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.full_plane_reads = 0

    def __getitem__(self, sel):
        out = self._data[sel]
        if out.shape == self.shape[-2:]:
            self.full_plane_reads += 1
        return out


def test_embedding_reads_a_lazy_plane_once(classical_segmenter):
    stack = _CountingStack(np.stack([_scene(), _scene() * 0.5, _scene()]))
    seg = classical_segmenter.set_image(stack, contrast_limits=(0.0, 1.0))
    seg.predict(1, points=[A_CLICK], point_labels=[1])
    assert stack.full_plane_reads == 1  # key and SAM input from one read
    seg.predict(1, points=[A_CLICK], point_labels=[1])
    assert stack.full_plane_reads == 2  # the cache key needs the content again
    assert seg.stats.encodes == 1 and seg.stats.hits == 1
