"""Model registry, checkpoint discovery, device and precision (no model is built here)."""

from __future__ import annotations

import pytest
import torch

from napari_sam2.engine.errors import (
    CheckpointNotFoundError,
    DeviceError,
    HubUnavailableError,
    UnknownModelError,
)
from napari_sam2.engine.model import checkpoints, load, registry
from napari_sam2.engine.model.checkpoints import (
    CHECKPOINT_DIR_ENV,
    find_checkpoint,
    resolve_checkpoint,
)
from napari_sam2.engine.model.registry import get_spec
from napari_sam2.engine.runtime import devices
from napari_sam2.engine.runtime.devices import resolve_device, resolve_precision


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize(
    ("name", "size", "version"),
    [
        ("tiny", "tiny", "2.1"),
        ("t", "tiny", "2.1"),
        ("small", "small", "2.1"),
        ("base_plus", "base_plus", "2.1"),
        ("base-plus", "base_plus", "2.1"),
        ("b+", "base_plus", "2.1"),
        ("LARGE", "large", "2.1"),
        ("sam2.1_hiera_small", "small", "2.1"),
        ("sam2_hiera_large", "large", "2.0"),
        ("facebook/sam2.1-hiera-base-plus", "base_plus", "2.1"),
        ("facebook/sam2-hiera-tiny", "tiny", "2.0"),
    ],
)
def test_get_spec_parses_names(name, size, version):
    spec = get_spec(name)
    assert (spec.size, spec.version) == (size, version)


@pytest.mark.parametrize("name", ["huge", "sam3_tiny", "", "vit_h"])
def test_get_spec_rejects_unknown(name):
    with pytest.raises(UnknownModelError, match="Unknown SAM 2 model"):
        get_spec(name)


def test_get_spec_rejects_unknown_version():
    with pytest.raises(UnknownModelError):
        get_spec("tiny", version="3.0")


@pytest.mark.parametrize("size", registry.SIZES)
def test_spec_fields_match_official_names(size):
    spec = get_spec(size)
    short = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}[size]
    assert spec.config == f"configs/sam2.1/sam2.1_hiera_{short}.yaml"
    assert spec.checkpoint_name == f"sam2.1_hiera_{size}.pt"
    assert spec.hf_id == "facebook/sam2.1-hiera-" + size.replace("_", "-")
    assert spec.url == (
        f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{size}.pt"
    )
    old = get_spec(size, version="2.0")
    assert old.config == f"configs/sam2/sam2_hiera_{short}.yaml"
    assert old.checkpoint_name == f"sam2_hiera_{size}.pt"
    assert old.url.startswith("https://dl.fbaipublicfiles.com/segment_anything_2/072824/")


@pytest.mark.parametrize("size", registry.SIZES)
@pytest.mark.parametrize("version", registry.VERSIONS)
def test_every_registered_config_ships_with_sam2(size, version):
    from importlib import resources

    spec = get_spec(size, version)
    assert resources.files("sam2").joinpath(spec.config).is_file(), spec.config


def test_load_model_config_applies_image_size_and_postprocessing():
    cfg = load.load_model_config(get_spec("tiny"), image_size=256)
    assert cfg.model.image_size == 256
    extra = cfg.model.sam_mask_decoder_extra_args
    assert extra.dynamic_multimask_via_stability is True
    with pytest.raises(ValueError, match="multiple of 32"):
        load.load_model_config(get_spec("tiny"), image_size=250)


# ---------------------------------------------------------------------- checkpoints
def test_find_checkpoint_uses_env_dir(no_checkpoints, monkeypatch):
    spec = get_spec("tiny")
    assert find_checkpoint(spec) is None
    folder = no_checkpoints / "my_models"
    folder.mkdir()
    ckpt = folder / "sam2.1_hiera_tiny.pt"
    ckpt.write_bytes(b"not really a checkpoint")
    other = no_checkpoints / "empty"
    other.mkdir()
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, f"{other}:{folder}")
    assert find_checkpoint(spec) == ckpt
    # only the file of the requested size/version counts
    assert find_checkpoint(get_spec("small")) is None
    assert find_checkpoint(get_spec("tiny", version="2.0")) is None


def test_find_checkpoint_in_home_cache_and_cwd(no_checkpoints):
    spec = get_spec("small")
    home_dir = no_checkpoints / "home" / ".cache" / "napari-sam2"
    home_dir.mkdir(parents=True)
    (home_dir / spec.checkpoint_name).write_bytes(b"x")
    assert find_checkpoint(spec) == home_dir / spec.checkpoint_name
    cwd_dir = no_checkpoints / "work" / "checkpoints"
    cwd_dir.mkdir()
    (cwd_dir / "sam2.1_hiera_large.pt").write_bytes(b"x")
    assert find_checkpoint(get_spec("large")) == cwd_dir / "sam2.1_hiera_large.pt"


def test_find_checkpoint_explicit_file_and_folder(tmp_path):
    spec = get_spec("tiny")
    f = tmp_path / "renamed.pt"
    f.write_bytes(b"x")
    assert find_checkpoint(spec, f) == f
    (tmp_path / spec.checkpoint_name).write_bytes(b"x")
    assert find_checkpoint(spec, tmp_path) == tmp_path / spec.checkpoint_name
    with pytest.raises(CheckpointNotFoundError, match="sam2.1_hiera_small.pt"):
        find_checkpoint(get_spec("small"), tmp_path)


def test_missing_checkpoint_file_names_file_and_url(tmp_path):
    spec = get_spec("tiny")
    missing = tmp_path / "nope" / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint(spec, missing)
    msg = str(info.value)
    assert "sam2.1_hiera_tiny.pt" in msg
    assert spec.url in msg
    assert str(missing) in msg
    assert isinstance(info.value, FileNotFoundError)


def test_no_checkpoint_anywhere_says_where_to_put_it(no_checkpoints):
    spec = get_spec("tiny")
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint(spec)
    msg = str(info.value)
    assert "sam2.1_hiera_tiny.pt" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in msg
    assert CHECKPOINT_DIR_ENV in msg
    assert "facebook/sam2.1-hiera-tiny" in msg


def test_load_sam2_without_checkpoint_raises_before_building(no_checkpoints, monkeypatch):
    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("the model must not be built without a checkpoint")

    monkeypatch.setattr(load, "build_model", boom)
    with pytest.raises(CheckpointNotFoundError, match="sam2.1_hiera_tiny.pt"):
        load.load_sam2("tiny", device="cpu")


def test_offline_hub_gives_hub_error(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    with pytest.raises(HubUnavailableError) as info:
        checkpoints.download_checkpoint(get_spec("tiny"))
    msg = str(info.value)
    assert "network is unreachable" in msg
    assert "sam2.1_hiera_tiny.pt" in msg


def test_file_sha256(tmp_path):
    import hashlib

    f = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    f.write_bytes(data)
    assert checkpoints.file_sha256(f, chunk=1000) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- devices
def test_resolve_device_auto_matches_this_machine():
    dev = resolve_device("auto")
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    elif devices._mps_available():
        assert dev.type == "mps"
    else:
        assert dev.type == "cpu"
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type == dev.type


def test_resolve_device_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="CUDA"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="CUDA"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="MPS"):
        resolve_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_resolve_device_cuda_raises_here():
    with pytest.raises(DeviceError):
        resolve_device("cuda")


def test_resolve_device_rejects_nonsense():
    with pytest.raises(DeviceError):
        resolve_device("tpu-of-dreams")


def test_resolve_precision(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision(cpu, "auto") == "fp32"
    monkeypatch.setattr(devices, "_cuda_bf16", lambda: True)
    assert resolve_precision(cuda, "auto") == "bf16"
    monkeypatch.setattr(devices, "_cuda_bf16", lambda: False)  # pre-Ampere GPU
    assert resolve_precision(cuda, "auto") == "fp32"
    assert resolve_precision(cpu, "bf16") == "bf16"
    assert resolve_precision(cuda, "fp32") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(cpu, "fp8")


def test_autocast_contexts():
    cpu = torch.device("cpu")
    with devices.autocast(cpu, "bf16"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.bfloat16
    with devices.autocast(cpu, "fp32"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
