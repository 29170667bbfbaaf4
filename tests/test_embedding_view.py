"""SAM 2 embeddings are read through a typed view (``SamFeatures``), never by string key
outside ``engine/backends/`` (the backends own the layout; the caches move it opaquely)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import napari_sam2
from napari_sam2.engine.backends.base import SamFeatures

SRC = Path(napari_sam2.__file__).parent
KEYS = {"image_embed", "high_res_feats", "orig_hw"}


def _key_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value in KEYS
        ):
            found.append(f"{path.relative_to(SRC)}:{node.lineno} [{node.slice.value!r}]")
    return found


def test_no_embedding_key_reads_outside_the_backends():
    outside = [p for p in SRC.rglob("*.py") if "backends" not in p.relative_to(SRC).parts]
    assert [r for p in outside for r in _key_reads(p)] == []


def test_the_scan_finds_key_reads(tmp_path):  # control: the check above can fail
    probe = SRC / "engine" / "backends" / "sam2.py"
    assert _key_reads(probe), "the SAM 2 backend reads its own keys: the scan must see them"


def test_features_of_a_real_encode(sam2_random_checkpoint):
    torch = pytest.importorskip("torch")
    from conftest import TEST_IMAGE_SIZE
    from napari_sam2.engine import Segmenter

    seg = Segmenter("tiny", checkpoint=sam2_random_checkpoint, device="cpu",
                    image_size=TEST_IMAGE_SIZE, precision="fp32")  # fmt: skip
    image = np.random.default_rng(0).random((90, 120)).astype(np.float32)
    seg.set_image(image)
    feats = SamFeatures.of(seg.embedding())
    assert feats.orig_hw == (90, 120)
    side = TEST_IMAGE_SIZE // 16
    assert tuple(feats.image_embed.shape) == (1, 256, side, side)
    assert [tuple(f.shape[-2:]) for f in feats.high_res_feats] == [(4 * side,) * 2, (2 * side,) * 2]
    assert SamFeatures.of(feats) is feats
    moved = feats.to("cpu", torch.float32)
    assert moved.image_embed is not feats.image_embed and not moved.image_embed.requires_grad
    assert torch.equal(moved.image_embed, feats.image_embed.float())
    assert moved.orig_hw == feats.orig_hw
