"""Video mode: the real SAM 2.1 tiny architecture (random weights, image_size 256, CPU).

Random weights make the masks meaningless: these tests check the plumbing (lazy frames,
one pass per direction, IDs, shapes, dtypes, the planned writes), not the quality.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8.tif")
    gt = tifffile.imread(shared_data / "nuclei3d_ovule_zyx_uint8_labels.tif")
    return img, gt


def _lazy(stack, reads):
    da = pytest.importorskip("dask.array")
    from dask import delayed

    def read(z):
        reads.append(z)
        return stack[z]

    planes = [
        da.from_delayed(delayed(read)(z), stack.shape[1:], stack.dtype) for z in range(len(stack))
    ]
    return da.stack(planes)


def test_video_predictor_shares_the_image_model(sam2_random_segmenter):
    from napari_sam2.engine.propagation.video import video_predictor

    model = sam2_random_segmenter.backend.loaded.model
    vp = video_predictor(model)
    assert type(vp).__name__ == "SAM2VideoPredictor"
    assert vp.image_encoder is model.image_encoder
    assert vp.sam_mask_decoder is model.sam_mask_decoder
    assert vp.memory_attention is model.memory_attention
    assert vp.image_size == model.image_size == 256
    assert vp.binarize_mask_from_pts_for_mem_enc and not model.binarize_mask_from_pts_for_mem_enc
    assert not hasattr(model, "non_overlap_masks")


def test_lazy_frames_normalise_like_the_image_path(sam2_random_segmenter, nuclei):
    from sam2.utils.transforms import SAM2Transforms

    from napari_sam2.engine.planes import PlaneSource
    from napari_sam2.engine.propagation.video import LazyFrames

    img, _ = nuclei
    src = PlaneSource(img[:, :, :80])  # non-square planes
    frames = LazyFrames(src, [(z,) for z in (10, 11, 12)], 256)
    assert len(frames) == 3 and frames.reads == 0
    t = frames[1]
    assert frames.reads == 1
    assert t.shape == (3, 256, 256) and t.dtype == torch.float32
    ref = SAM2Transforms(256, 0.0)(src.sam_image((11,)))
    torch.testing.assert_close(t, ref)


@pytest.mark.slow
def test_video_mode_multi_object_both_directions_lazy(sam2_random_segmenter, nuclei):
    from napari_sam2.engine.propagation import propagate

    img, gt = nuclei
    crop, gcrop = img[:, 10:90, 10:90], gt[:, 10:90, 10:90]
    reads = []
    seg = sam2_random_segmenter.set_image(_lazy(crop, reads), contrast_limits=(0, 255))
    z = 40
    ids = [int(v) for v in np.unique(gcrop[z]) if v][:2]
    lab = np.zeros(gcrop.shape, np.int32)
    for i in ids:
        lab[z][gcrop[z] == i] = i
    lab[70, 5:9, 5:9] = 77  # an object on another plane: never touched
    start_plane = lab[z].copy()
    seen = []
    rep = propagate(
        seg,
        lab,
        (z,),
        mode="video",
        stop_at=(z - 2, z + 2),
        iou_threshold=None,
        max_area_ratio=None,
        min_area=0,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert rep.mode == "video" and rep.applied and not rep.cancelled
    # lazily read: each plane of the range once, nothing else
    assert sorted(reads) == list(range(z - 2, z + 3))
    assert rep.plane_reads == 5
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert rep.label_ids == ids
    for i in ids:
        t = rep.objects[i]
        assert t.stopped == {"forward": "end", "backward": "end"}
        assert t.planes == [z - 2, z - 1, z + 1, z + 2]
        for p in t.planes:
            assert t.areas[p] == int((lab[p] == i).sum())
    assert lab.dtype == np.int32 and lab.shape == gcrop.shape
    np.testing.assert_array_equal(lab[z], start_plane)
    assert set(np.unique(lab[z - 2 : z + 3])) <= {0, *ids}
    assert not lab[: z - 2].any() and (lab[z + 3 :] != 0).sum() == 16
    assert (lab[70] == 77).sum() == 16


@pytest.mark.slow
def test_video_mode_cancel_leaves_labels_identical(sam2_random_segmenter, nuclei):
    from napari_sam2.engine.propagation import propagate

    img, gt = nuclei
    seg = sam2_random_segmenter.set_image(img[:, 10:90, 10:90])
    lab = np.zeros((100, 80, 80), np.int32)
    lab[40][gt[40, 10:90, 10:90] > 0] = 3
    before = hashlib.sha256(lab.tobytes()).hexdigest()
    ev = threading.Event()
    rep = propagate(
        seg,
        lab,
        (40,),
        mode="video",
        stop_at=(37, 43),
        iou_threshold=None,
        max_area_ratio=None,
        min_area=0,
        cancel=ev,
        progress=lambda d, t: ev.set(),
    )
    assert rep.cancelled and not rep.applied and rep.planes_done == 1
    assert hashlib.sha256(lab.tobytes()).hexdigest() == before
