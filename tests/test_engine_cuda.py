"""The CUDA path of the engine (real SAM 2.1 tiny architecture, random weights).

Skipped where PyTorch sees no CUDA GPU (CI, laptops); run on a GPU machine with
``python -m pytest tests/test_engine_cuda.py``.  Checks that prompts, masks and the cache
work on the GPU, that fp32 on the GPU agrees with fp32 on the CPU, and that the automatic
precision (bf16 autocast) stays close to fp32.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

from napari_sam2.engine import Segmenter  # noqa: E402
from napari_sam2.engine.runtime.devices import resolve_device, resolve_precision  # noqa: E402

SIZE = 256
H, W = 96, 160


def _image() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(100, 400, (H, W))
    img[20:50, 40:90] += 3000
    img[60:85, 110:150] += 1500
    return img.astype(np.uint16)


def _seg(ckpt, device, precision="auto"):
    return Segmenter(
        "tiny",
        checkpoint=ckpt,
        backend="sam2",
        device=device,
        precision=precision,
        image_size=SIZE,
    ).set_image(_image())


def test_auto_device_and_precision():
    dev = resolve_device("auto")
    assert dev.type == "cuda"
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert resolve_precision(dev, "auto") == expected


def test_prompts_masks_and_cache_on_cuda(sam2_random_checkpoint):
    seg = _seg(sam2_random_checkpoint, "cuda")
    d = seg.describe()
    assert d["device"].startswith("cuda")
    emb = seg.embedding(())
    assert emb["image_embed"].device.type == "cuda"
    click = seg.predict(points=[[35, 60]], point_labels=[1])
    assert len(click) == 1
    assert click[0].candidates.shape == (3, H, W) and click[0].candidates.dtype == bool
    boxes = seg.predict(boxes=[[20, 40, 50, 90], [60, 110, 85, 150]])
    assert [p.mask.shape for p in boxes] == [(H, W), (H, W)]
    mask = np.zeros((H, W), bool)
    mask[22:48, 42:88] = True
    refined = seg.predict(masks=mask[None])
    assert refined[0].mask.shape == (H, W)
    assert refined[0].low_res.shape[-1] == SIZE // 4
    assert seg.stats.encodes == 1 and seg.stats.hits >= 3
    labels = np.zeros((H, W), np.uint16)
    ids = seg.segment_into(labels, boxes=[[20, 40, 50, 90], [60, 110, 85, 150]])
    assert ids == [1, 2]
    assert labels.dtype == np.uint16
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_cuda_fp32_matches_cpu_fp32(sam2_random_checkpoint):
    prompts = {"points": [[35, 60], [70, 130]], "point_labels": [1, 0]}
    cpu = _seg(sam2_random_checkpoint, "cpu", "fp32")
    gpu = _seg(sam2_random_checkpoint, "cuda", "fp32")
    e_cpu = cpu.embedding(())["image_embed"].float().cpu()
    e_gpu = gpu.embedding(())["image_embed"].float().cpu()
    rel = float((e_cpu - e_gpu).abs().max() / e_cpu.abs().max())
    assert rel < 0.02, rel  # TF32 matmuls on Ampere+ differ a little from CPU fp32
    lc = cpu.predict(**prompts)[0].low_res
    lg = gpu.predict(**prompts)[0].low_res
    agree = np.mean((lc > 0) == (lg > 0))
    assert agree > 0.98, agree


def test_bf16_close_to_fp32(sam2_random_checkpoint):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    f32 = _seg(sam2_random_checkpoint, "cuda", "fp32")
    b16 = _seg(sam2_random_checkpoint, "cuda", "bf16")
    e32 = f32.embedding(())["image_embed"].float()
    e16 = b16.embedding(())["image_embed"].float()
    rel = float((e32 - e16).abs().max() / e32.abs().max())
    assert rel < 0.1, rel
    p32 = f32.predict(boxes=[[20, 40, 50, 90]])[0].low_res
    p16 = b16.predict(boxes=[[20, 40, 50, 90]])[0].low_res
    assert p16.dtype == np.float32
    assert np.mean((p32 > 0) == (p16 > 0)) > 0.95


def test_cancel_mid_encode_on_cuda(sam2_random_checkpoint):
    import threading

    from napari_sam2.engine.errors import Cancelled

    seg = _seg(sam2_random_checkpoint, "cuda")
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        seg.predict(points=[[35, 60]], point_labels=[1], cancel=ev)
    assert seg.stats.encodes == 0
    assert seg.predict(points=[[35, 60]], point_labels=[1])[0].mask.shape == (H, W)
