"""Float images with NaN / +inf / -inf (processing pipelines write them): the classical
backend thresholds the finite values and keeps NaN out of objects; SAM 2 never embeds a
NaN silently (the Segmenter maps them, a direct encode of one is a typed error)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_sam2.engine import ClassicalBackend, Segmenter
from napari_sam2.engine.errors import ImageError
from napari_sam2.engine.prompts import make_objects

OBJ = (slice(20, 40), slice(30, 55))  # the bright object
CLICK = (30, 42)


def _image() -> np.ndarray:
    img = np.full((64, 80), 0.1, np.float32)
    img[OBJ] = 5.0
    img[0:5, 0:5] = np.inf  # saturated corner
    img[58:, 70:] = -np.inf
    img[50:55, 0:20] = np.nan  # a NaN stripe in the background
    img[24:27, 33:36] = np.nan  # NaN pixels inside the object
    return img


def _object() -> np.ndarray:
    m = np.zeros((64, 80), bool)
    m[OBJ] = True
    return m


def _iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(autouse=True)
def _no_runtime_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # NaN in a mean/min: a bug here
        yield


def test_classical_encode_of_raw_nan_inf_plane():
    backend = ClassicalBackend()
    emb = backend.encode(_image())
    assert np.isfinite(emb["smooth"]).all()
    assert 0.1 < emb["threshold"] < 5.0  # Otsu of the finite values, not NaN/inf
    click = make_objects([CLICK], None, None, None)
    [pred] = backend.predict(emb, click, multimask=False)
    assert _iou(pred.mask, _object()) > 0.8  # the object (holes of NaN filled)
    assert pred.mask[25, 34]  # a NaN pixel inside the object is a filled hole
    # a box around it: the same object
    box = make_objects(None, None, [(15, 25, 45, 60)], None)
    [pred] = backend.predict(emb, box)
    assert _iou(pred.mask, _object()) > 0.8
    # a click on the NaN stripe (no data) seeds no object
    [pred] = backend.predict(emb, make_objects([(52, 10)], None, None, None), multimask=False)
    assert not pred.mask.any()


def test_classical_encode_of_all_nan_plane_gives_no_object():
    backend = ClassicalBackend()
    emb = backend.encode(np.full((32, 32), np.nan, np.float32))
    assert np.isfinite(emb["smooth"]).all()
    [pred] = backend.predict(emb, make_objects([(16, 16)], None, None, None))
    assert pred.candidates.shape == (3, 32, 32) and not pred.candidates.any()


def test_classical_segmenter_on_nan_inf_image(classical_segmenter):
    seg = classical_segmenter.set_image(_image())
    norm = seg.source.normalization
    assert np.isfinite(norm.low + norm.high).all() and norm.high[0] == 5.0
    labels = np.zeros((64, 80), np.int32)
    assert seg.segment_into(labels, points=[CLICK]) == [1]
    assert _iou(labels == 1, _object()) > 0.9
    assert not (labels[50:55, 0:20]).any()  # the NaN stripe stays background
    lab = seg.segment_everything(None)
    assert lab.max() >= 1 and _iou(lab == lab[CLICK], _object()) > 0.9


def test_sam2_encode_refuses_nan_with_a_typed_error(sam2_random_segmenter):
    backend = sam2_random_segmenter.backend
    image = np.zeros((64, 64, 3), np.float32)
    image[3, 4, 1] = np.nan
    image[5, 6, 0] = np.inf
    with pytest.raises(ImageError, match=r"2 NaN/inf value\(s\).*nan_to_num"):
        backend.encode(image)
    with pytest.raises(ImageError, match="NaN/inf"):
        backend.encode_batch([np.zeros((64, 64, 3), np.float32), image])


def test_sam2_segmenter_maps_nan_inf_to_finite_embeddings(sam2_random_segmenter):
    seg = Segmenter(predictor=sam2_random_segmenter.backend, disk_cache=False)
    seg.set_image(_image())
    x = seg.source.sam_image()
    assert np.isfinite(x).all() and x.min() == 0.0 and x.max() == 1.0
    emb = seg.embedding()
    assert bool(np.isfinite(emb["image_embed"].float().numpy()).all())
    assert all(bool(np.isfinite(f.float().numpy()).all()) for f in emb["high_res_feats"])
    [pred] = seg.predict(points=[CLICK])
    assert np.isfinite(pred.scores).all() and pred.candidates.dtype == bool
