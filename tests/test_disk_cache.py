"""Never encode twice: the persistent embedding cache (engine/cache/disk.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_sam2.engine import Segmenter
from napari_sam2.engine.cache.disk import DiskCache, default_dir, resolve

TEST_IMAGE_SIZE = 256  # as tests/conftest.py


def _image(seed=0, shape=(2, 64, 64)):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 200, shape).astype(np.uint16)
    img[..., 20:40, 20:40] += 2000  # a bright square to click on
    return img


def _sam2(ckpt, folder):
    return Segmenter(
        "tiny",
        checkpoint=ckpt,
        backend="sam2",
        device="cpu",
        image_size=TEST_IMAGE_SIZE,
        disk_cache=folder,
    )


def test_classical_second_segmenter_encodes_nothing(tmp_path):
    img = _image()
    a = Segmenter(backend="classical", disk_cache=tmp_path).set_image(img)
    [pa] = a.predict(plane=(1,), points=[(30, 30)])
    assert a.stats.encodes == 1 and a.stats.disk_misses == 1
    assert len(list(tmp_path.glob("*.npz"))) == 1

    b = Segmenter(backend="classical", disk_cache=tmp_path).set_image(img.copy())
    [pb] = b.predict(plane=(1,), points=[(30, 30)])
    assert b.stats.encodes == 0 and b.stats.disk_hits == 1
    np.testing.assert_array_equal(pa.mask, pb.mask)
    assert pb.mask[30, 30] and not pb.mask[5, 5]


def test_changes_are_misses(tmp_path):
    img = _image()
    Segmenter(backend="classical", disk_cache=tmp_path).set_image(img).precompute()
    assert len(list(tmp_path.glob("*.npz"))) == 2

    same = Segmenter(backend="classical", disk_cache=tmp_path).set_image(img)
    assert same.precompute() == 2 and same.stats.encodes == 0

    window = Segmenter(backend="classical", disk_cache=tmp_path)
    window.set_image(img, contrast_limits=(0, 1000)).embedding((0,))
    assert window.stats.encodes == 1 and window.stats.disk_hits == 0

    changed = img.copy()
    changed[0, 0, 0] += 1
    pixels = Segmenter(backend="classical", disk_cache=tmp_path)
    pixels.set_image(changed, contrast_limits=(0, 3000)).embedding((0,))
    pixels2 = Segmenter(backend="classical", disk_cache=tmp_path)
    pixels2.set_image(img, contrast_limits=(0, 3000)).embedding((0,))
    assert pixels.stats.encodes == 1 and pixels2.stats.encodes == 1


def test_corrupt_or_truncated_file_is_a_miss_and_deleted(tmp_path):
    img = _image()
    Segmenter(backend="classical", disk_cache=tmp_path).set_image(img).precompute()
    f0, f1 = sorted(tmp_path.glob("*.npz"))
    f0.write_bytes(b"not a zip file")
    f1.write_bytes(f1.read_bytes()[: f1.stat().st_size // 2])
    seg = Segmenter(backend="classical", disk_cache=tmp_path).set_image(img)
    assert seg.precompute() == 2
    assert seg.stats.encodes == 2 and seg.stats.disk_misses == 2
    # rewritten whole, readable without pickle
    for f in tmp_path.glob("*.npz"):
        with np.load(f, allow_pickle=False) as z:
            assert "__meta__" in z.files


def test_size_cap_evicts_least_recently_used(tmp_path):
    img = _image(shape=(3, 64, 64))
    first = Segmenter(backend="classical", disk_cache=tmp_path).set_image(img)
    first.precompute()
    files = sorted(tmp_path.glob("*.npz"), key=lambda p: p.stat().st_mtime)
    size = files[0].stat().st_size
    # plane 0 oldest, then 1, 2; touch plane 0 by reading it back
    t = 1_000_000_000
    for i, f in enumerate(files):
        os.utime(f, (t + i, t + i))
    cache = DiskCache(tmp_path, max_bytes=int(size * 2.5))
    reader = Segmenter(backend="classical", disk_cache=cache).set_image(img)
    reader.embedding((0,))  # a hit refreshes plane 0's access time
    assert reader.stats.disk_hits == 1
    key0 = next(p for p in files if p.stat().st_atime > t + 10)
    assert cache.evict() == 1
    left = set(tmp_path.glob("*.npz"))
    oldest_untouched = next(f for f in files if f != key0)
    assert left == set(files) - {oldest_untouched}
    assert cache.nbytes <= cache.max_bytes


def test_resolve_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("NAPARI_SAM2_DISK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve(None) is None and resolve(False) is None
    assert resolve(True).folder == tmp_path / "xdg" / "napari-sam2" / "embeddings"
    assert default_dir() == tmp_path / "xdg" / "napari-sam2" / "embeddings"
    assert resolve(tmp_path / "x").folder == tmp_path / "x"
    monkeypatch.setenv("NAPARI_SAM2_DISK_CACHE", "1")
    assert resolve(None).folder == default_dir()
    monkeypatch.setenv("NAPARI_SAM2_DISK_CACHE", str(tmp_path / "env"))
    assert resolve(None).folder == tmp_path / "env"
    assert resolve(False) is None
    monkeypatch.setenv("NAPARI_SAM2_DISK_CACHE", "0")
    assert Segmenter(backend="classical").disk_cache is None


@pytest.mark.slow
def test_sam2_never_encodes_twice(sam2_random_checkpoint, tmp_path):
    pytest.importorskip("torch")
    img = _image(shape=(64, 64))
    a = _sam2(sam2_random_checkpoint, tmp_path / "c").set_image(img)
    [pa] = a.predict(points=[(30, 30)])
    assert a.stats.encodes == 1
    [f] = (tmp_path / "c").glob("*.npz")
    with np.load(f, allow_pickle=False) as z:  # no pickle inside
        assert z["image_embed"].dtype == np.float32
        assert z["image_embed"].shape[-1] == TEST_IMAGE_SIZE // 16

    b = _sam2(sam2_random_checkpoint, tmp_path / "c").set_image(img)
    [pb] = b.predict(points=[(30, 30)])
    assert b.stats.encodes == 0 and b.stats.disk_hits == 1
    np.testing.assert_array_equal(pa.mask, pb.mask)

    # contrast limits → miss
    c = _sam2(sam2_random_checkpoint, tmp_path / "c").set_image(img, contrast_limits=(0, 500))
    c.embedding()
    assert c.stats.encodes == 1

    # another checkpoint (other bytes, other sha256) → miss
    import torch

    other = tmp_path / "other" / "sam2.1_hiera_tiny.pt"
    other.parent.mkdir()
    sd = torch.load(sam2_random_checkpoint, map_location="cpu", weights_only=True)
    k = next(iter(sd["model"]))
    sd["model"][k] = sd["model"][k] + 1
    torch.save(sd, other)
    d = _sam2(other, tmp_path / "c").set_image(img)
    d.embedding()
    assert d.stats.encodes == 1 and d.stats.disk_hits == 0


def test_cli_precompute_then_segment_encodes_nothing(tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    from napari_sam2.cli import main

    path = tmp_path / "stack.tif"
    img = _image(shape=(3, 64, 64))
    tifffile.imwrite(path, img)
    args = [str(path), "--disk-cache", str(tmp_path / "c"), "--backend", "classical"]
    assert main(["precompute", *args]) == 0
    assert "3 planes: 3 encoded, 0 already cached" in capsys.readouterr().out
    assert len(list((tmp_path / "c").glob("*.npz"))) == 3
    assert main(["precompute", *args]) == 0
    assert "3 planes: 0 encoded, 3 already cached" in capsys.readouterr().out
    # the API on the same image/normalisation finds them too
    seg = Segmenter(backend="classical", disk_cache=tmp_path / "c").set_image(img)
    seg.embedding((2,))
    assert seg.stats.encodes == 0 and seg.stats.disk_hits == 1
    assert main(["precompute", str(tmp_path / "missing.tif"), "--disk-cache", "x"]) == 2


def test_bf16_tensors_round_trip_without_pickle(tmp_path):
    torch = pytest.importorskip("torch")

    class Backend:  # a checkpoint-backed model: describe() has no random_weights
        device = torch.device("cpu")

        def describe(self):
            return {"backend": "fake"}

    emb = {
        "image_embed": torch.arange(12, dtype=torch.bfloat16).reshape(1, 3, 2, 2),
        "high_res_feats": [torch.ones(1, 2, 4, 4), torch.zeros(1, 1, 8, 8, dtype=torch.float16)],
        "orig_hw": (64, 48),
        "encode_s": 0.25,
    }
    cache = DiskCache(tmp_path)
    assert cache.put(("k",), emb, Backend())
    got = cache.get(("k",), Backend())
    assert got["image_embed"].dtype == torch.bfloat16
    assert torch.equal(got["image_embed"], emb["image_embed"])
    assert [t.dtype for t in got["high_res_feats"]] == [torch.float32, torch.float16]
    assert got["orig_hw"] == (64, 48) and got["encode_s"] == 0.25
    assert cache.get(("other",), Backend()) is None and (cache.hits, cache.misses) == (1, 1)

    class Random(Backend):
        def describe(self):
            return {"random_weights": True}

    assert not cache.put(("r",), emb, Random()) and len(cache.files()) == 1
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_cli_precompute_of_one_channel_fills_that_channels_cache(tmp_path, capsys):
    """``--channel 1`` encodes channel 1 of a CYX stack: the API on channel 1 finds it in the
    cache, the default channel mode (mean) does not."""
    tifffile = pytest.importorskip("tifffile")
    from napari_sam2.cli import main

    path = tmp_path / "cells.tif"
    img = np.stack([_image(shape=(64, 64)), _image(shape=(64, 64))[::-1].copy()])
    tifffile.imwrite(path, img, metadata={"axes": "CYX"})
    args = [str(path), "--disk-cache", str(tmp_path / "c"), "--backend", "classical"]
    assert main(["precompute", *args, "--channel", "1"]) == 0
    assert "1 planes: 1 encoded, 0 already cached" in capsys.readouterr().out
    seg = Segmenter(backend="classical", disk_cache=tmp_path / "c")
    seg.set_image(img, channel_axis=0, channel=1).embedding()
    assert seg.stats.encodes == 0 and seg.stats.disk_hits == 1
    mean = Segmenter(backend="classical", disk_cache=tmp_path / "c")
    mean.set_image(img, channel_axis=0).embedding()
    assert mean.stats.encodes == 1 and mean.stats.disk_hits == 0
