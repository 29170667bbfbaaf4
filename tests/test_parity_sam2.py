"""Parity with the reference predictor: ``sam2.SAM2ImagePredictor`` on the same weights.

The same random-weight SAM 2.1 tiny checkpoint (``sam2_random_checkpoint``, image_size 256)
is loaded twice: by napari-sam2 (:class:`Segmenter`, prompts in data (row, col)) and by
sam2's own ``build_sam2`` + ``SAM2ImagePredictor`` (prompts in (x, y)).  Both see the same
float image, a *non-square* 200 x 300 crop of a real nuclei image, so a row/col swap moves
every prompt to another place and changes the masks.  This is the end-to-end proof of the
(row, col) -> (x, y) swap and of the prompt path (boxes as corner points, batching, padding,
multimask choice) that the classical-backend tests cannot give.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("torch")
pytest.importorskip("sam2")

from conftest import TEST_IMAGE_SIZE  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CROP = (slice(150, 350), slice(100, 400))  # 200 rows x 300 columns
IOU_MIN = 0.99
SCORE_ATOL = 1e-4


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _xy(rc) -> np.ndarray:
    """(row, col) -> (x, y), written independently of the engine's ``to_xy``."""
    rc = np.asarray(rc, dtype=np.float32).reshape(-1, 2)
    return np.stack([rc[:, 1], rc[:, 0]], axis=1)


def _box_xyxy(box_rc) -> np.ndarray:
    r0, c0, r1, c1 = box_rc
    return np.array([c0, r0, c1, r1], dtype=np.float32)


@pytest.fixture(scope="module")
def crop(shared_data) -> np.ndarray:
    image = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    out = np.ascontiguousarray(image[CROP])
    assert out.shape == (200, 300)
    return out


@pytest.fixture(scope="module")
def ours(sam2_random_checkpoint, crop):
    """napari-sam2's loading path (own instance: no state shared with other test modules)."""
    from napari_sam2.engine import Segmenter

    seg = Segmenter(
        "tiny",
        checkpoint=sam2_random_checkpoint,
        backend="sam2",
        device="cpu",
        image_size=TEST_IMAGE_SIZE,
    )
    return seg.set_image(crop)


@pytest.fixture(scope="module")
def float_image(ours, crop) -> np.ndarray:
    """The float image both predictors see; checked against an independent normalisation."""
    image = ours.source.sam_image()
    lo, hi = np.percentile(crop.astype(np.float64), (0.5, 99.8))
    expected = np.clip((crop.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo), 0, 1)
    assert image.shape == (200, 300, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[..., 0], expected, atol=1e-5)
    return image


@pytest.fixture(scope="module")
def reference(sam2_random_checkpoint, float_image):
    """sam2's own loading path and predictor, given the same checkpoint and float image."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from napari_sam2.engine.model.registry import get_spec

    model = build_sam2(
        get_spec("tiny").config,
        str(sam2_random_checkpoint),
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={TEST_IMAGE_SIZE}"],
    )
    pred = SAM2ImagePredictor(model)  # stock defaults: threshold 0, no hole filling
    s = TEST_IMAGE_SIZE  # sam2 hard-codes the feature sizes for image_size 1024
    pred._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    pred.set_image(float_image)
    return pred


def _ref_predict(reference, multimask: bool, **kw):
    """Reference masks/scores per object, candidates ordered by decreasing score."""
    masks, scores, _ = reference.predict(multimask_output=multimask, **kw)
    if masks.ndim == 3:  # one object
        masks, scores = masks[None], scores[None]
    out = []
    for m, s in zip(masks, scores, strict=True):
        order = np.argsort(-s, kind="stable")
        out.append((m[order] > 0, s[order]))
    return out


def _assert_same(preds, refs):
    assert len(preds) == len(refs)
    for k, (p, (rm, rs)) in enumerate(zip(preds, refs, strict=True)):
        assert p.candidates.shape == rm.shape, (k, p.candidates.shape, rm.shape)
        assert p.candidates.shape[-2:] == (200, 300)
        for j in range(len(rm)):
            iou = _iou(p.candidates[j], rm[j])
            assert iou > IOU_MIN, f"object {k}, candidate {j}: IoU {iou:.4f}"
        np.testing.assert_allclose(p.scores, rs, atol=SCORE_ATOL, err_msg=f"object {k}")


def test_parity_single_click(ours, reference):
    """One positive click (multimask, three candidates): same masks and scores as SAM2ImagePredictor."""
    rc = [(62.0, 231.0)]
    preds = ours.predict(points=rc)
    refs = _ref_predict(reference, True, point_coords=_xy(rc), point_labels=np.array([1]))
    assert preds[0].candidates.shape[0] == 3
    _assert_same(preds, refs)


def test_parity_negative_clicks(ours, reference):
    """Two positive and two negative clicks at fractional pixels: same mask and score."""
    rc = [(120.4, 40.0), (131.0, 52.6), (20.0, 270.0), (180.0, 150.5)]
    lab = [1, 1, 0, 0]
    preds = ours.predict(points=rc, point_labels=lab)
    refs = _ref_predict(reference, False, point_coords=_xy(rc), point_labels=np.array(lab))
    _assert_same(preds, refs)


def test_parity_box(ours, reference):
    """One box (r0, c0, r1, c1) vs the reference's xyxy box: same mask and score."""
    box = (30.0, 180.0, 110.0, 290.0)
    preds = ours.predict(boxes=[box])
    refs = _ref_predict(reference, False, box=_box_xyxy(box))
    _assert_same(preds, refs)


def test_parity_box_and_points(ours, reference):
    """A box with a positive and a negative click inside it: same mask and score."""
    box = (100.0, 20.0, 190.0, 140.0)
    rc = [(150.0, 60.0), (120.0, 130.0)]
    lab = [1, 0]
    preds = ours.predict(points=rc, point_labels=lab, boxes=[box])
    refs = _ref_predict(
        reference, False, point_coords=_xy(rc), point_labels=np.array(lab), box=_box_xyxy(box)
    )
    _assert_same(preds, refs)


def test_parity_several_boxes(ours, reference):
    """Three boxes at once (one batched decode) vs the reference's (B, 4) boxes."""
    boxes = [(5.0, 5.0, 60.0, 90.0), (70.0, 150.0, 140.0, 260.0), (150.0, 200.0, 199.0, 299.0)]
    preds = ours.predict(boxes=boxes)
    refs = _ref_predict(reference, False, box=np.stack([_box_xyxy(b) for b in boxes]))
    _assert_same(preds, refs)


def test_parity_several_clicked_objects(ours, reference):
    """Three objects of two clicks each (one batched decode) vs the reference's (B, N, 2) points."""
    from napari_sam2.engine import ObjectPrompt, Points

    objs_rc = [
        [(10.0, 20.0), (15.0, 30.0)],
        [(100.0, 250.0), (90.0, 200.0)],
        [(190.0, 10.0), (170.0, 60.0)],
    ]
    labs = [[1, 1], [1, 0], [1, 1]]
    objects = [ObjectPrompt(points=Points(c, lab)) for c, lab in zip(objs_rc, labs, strict=True)]
    preds = ours.predict(objects=objects)
    refs = _ref_predict(
        reference,
        False,
        point_coords=np.stack([_xy(c) for c in objs_rc]),
        point_labels=np.array(labs),
    )
    _assert_same(preds, refs)


def test_parity_segment_into_writes_reference_masks(ours, reference):
    """segment_into with two boxes writes IDs 1 and 2 exactly on the reference's masks."""
    boxes = [(5.0, 5.0, 60.0, 90.0), (150.0, 200.0, 199.0, 299.0)]
    labels = np.zeros((200, 300), np.int32)
    ids = ours.segment_into(labels, boxes=boxes)
    refs = _ref_predict(reference, False, box=np.stack([_box_xyxy(b) for b in boxes]))
    assert ids == [1, 2]
    first = refs[0][0][0]
    second = refs[1][0][0] & ~first  # keep policy: the first object keeps shared pixels
    assert _iou(labels == 1, first) > IOU_MIN
    assert _iou(labels == 2, second) > IOU_MIN
    assert set(np.unique(labels)) <= {0, 1, 2}
