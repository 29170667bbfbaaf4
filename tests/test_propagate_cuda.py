"""Propagation on a CUDA GPU: auto mode is the video predictor (random weights, 256 px).

Skipped without CUDA; on a GPU machine: ``python -m pytest tests/test_propagate_cuda.py``.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

from napari_sam2.engine import Segmenter  # noqa: E402
from napari_sam2.engine.propagation import propagate  # noqa: E402


@pytest.fixture(scope="module")
def cuda_seg(sam2_random_checkpoint, shared_data):
    img = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8.tif")
    seg = Segmenter(
        "tiny", checkpoint=sam2_random_checkpoint, backend="sam2", device="cuda", image_size=256
    )
    gt = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8_labels.tif")
    return seg.set_image(img), gt


def test_auto_is_video_on_cuda_whole_stack(cuda_seg):
    seg, gt = cuda_seg
    lab = np.zeros(gt.shape, np.int32)
    lab[50] = gt[50]
    ids = sorted(int(v) for v in np.unique(gt[50]) if v)
    rep = seg.propagate(lab, (50,), iou_threshold=None, max_area_ratio=None)
    assert rep.mode == "video" and rep.applied
    assert rep.label_ids == ids
    assert rep.planes_done == rep.planes_total == 99
    assert lab.dtype == np.int32 and set(np.unique(lab)) <= {0, *ids}
    np.testing.assert_array_equal(lab[50], gt[50])
    for lid, t in rep.objects.items():
        for p in t.planes:
            assert t.areas[p] == int((lab[p] == lid).sum())


def test_cancel_on_cuda_leaves_labels_identical(cuda_seg):
    seg, gt = cuda_seg
    lab = np.zeros(gt.shape, np.int32)
    lab[50] = gt[50]
    before = hashlib.sha256(lab.tobytes()).hexdigest()
    ev = threading.Event()
    rep = propagate(
        seg,
        lab,
        (50,),
        cancel=ev,
        progress=lambda d, t: d >= 10 and ev.set(),
        iou_threshold=None,
        max_area_ratio=None,
        min_area=0,
    )
    assert (
        rep.mode == "video"
        and rep.cancelled
        and rep.planes_done < rep.planes_total
        and hashlib.sha256(lab.tobytes()).hexdigest() == before
    )
