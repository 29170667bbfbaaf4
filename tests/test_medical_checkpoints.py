"""Medical SAM 2 fine-tunes load as custom checkpoints.

MedSAM2 (bowang-lab/MedSAM2, weights ``MedSAM2_latest.pt`` etc.) is SAM 2.1 *tiny*
(Hiera embed_dim 96, stages 1-2-7-2) trained at 512 px (its config
``sam2.1_hiera_t512.yaml``); its files are SAM 2 training checkpoints:
``{"model": state_dict, "optimizer": ..., "epoch": ..., ...}``, loaded strictly from the
``"model"`` key by SAM 2's own ``_load_checkpoint``. Here: a random-weight checkpoint saved
in exactly that layout loads through our loader with ``model="tiny"`` and
``image_size=512`` and segments a real CT slice.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

torch = pytest.importorskip("torch")

from napari_sam2.engine import Segmenter  # noqa: E402
from napari_sam2.engine.errors import NapariSam2Error  # noqa: E402
from napari_sam2.engine.model.load import build_model  # noqa: E402
from napari_sam2.engine.model.registry import get_spec  # noqa: E402
from napari_sam2.engine.model.state_dict import guess_size, guess_version  # noqa: E402
from napari_sam2.engine.prompts import ObjectPrompt, Points  # noqa: E402


@pytest.fixture(scope="module")
def medsam2_checkpoint(tmp_path_factory):
    with torch.random.fork_rng():
        torch.manual_seed(2024)
        model = build_model(get_spec("tiny", "2.1"), image_size=512)
    state = model.state_dict()
    path = tmp_path_factory.mktemp("medsam2") / "MedSAM2_latest.pt"
    torch.save(
        {
            "model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]},
            "epoch": 74,
            "loss": {"core_loss": 0.12},
            "steps": {"train": 10_000, "val": 0},
            "time_elapsed": 3600.0,
            "best_meter_values": {},
        },
        path,
    )
    return path, state


def test_medsam2_layout_loads_as_tiny_512_and_segments_ct(medsam2_checkpoint, shared_data):
    path, state = medsam2_checkpoint
    assert guess_size(state) == "tiny" and guess_version(state) == "2.1"
    seg = Segmenter("tiny", checkpoint=path, backend="sam2", device="cpu", image_size=512)
    loaded = seg.backend.loaded.model.state_dict()
    for key in (
        "image_encoder.trunk.patch_embed.proj.weight",
        "sam_mask_decoder.iou_token.weight",
    ):
        assert torch.equal(loaded[key].cpu(), state[key])
    facts = seg.describe()
    assert facts["image_size"] == 512 and facts["size"] == "tiny"
    assert facts["checkpoint"].endswith("MedSAM2_latest.pt") and facts["checkpoint_sha256"]
    ds = pydicom.dcmread(shared_data / "medical/CT_small.dcm")
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    seg.set_image(hu.astype(np.float32), contrast_limits=(-160.0, 240.0))
    (pred,) = seg.predict((), objects=[ObjectPrompt(points=Points([[64, 64]], [1]))])
    assert pred.candidates[0].shape == hu.shape


def test_medsam2_needs_the_tiny_model(medsam2_checkpoint):
    path, _ = medsam2_checkpoint
    with pytest.raises(NapariSam2Error, match="tiny"):
        Segmenter("small", checkpoint=path, backend="sam2", device="cpu", image_size=512)
