"""Shared fixtures of the test suite.

- ``shared_data``: the real microscopy files copied into ``tests/data`` (see its README.md).
- ``shared_index``: the entries of its ``index.json`` (file, axes, shape, dtype, scale, labels).
- ``sam2_random_checkpoint``: the real SAM 2.1 tiny architecture with random weights,
  saved as an official-looking checkpoint file (``sam2.1_hiera_tiny.pt``) in a tmp folder.
- ``sam2_random_segmenter``: a :class:`Segmenter` loaded from that checkpoint through the
  real checkpoint path (CPU, ``image_size=256`` to keep encodes fast).
- ``classical_segmenter``: the deterministic, weight-free backend (the tests' oracle).
- ``no_checkpoints``: no checkpoint can be found anywhere (HOME, cwd, env var, HF cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEST_DATA = Path(__file__).resolve().parent / "data"
TEST_IMAGE_SIZE = 256
SAM2_SEED = 1234


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, monkeypatch) -> Path:
    """Every test has its own settings file (the dock's open/closed sections …), never the
    user's; tests that check persistence point two docks at the same file."""
    path = tmp_path_factory.mktemp("settings") / "napari-sam2.ini"
    monkeypatch.setenv("NAPARI_SAM2_SETTINGS", str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def _no_precision_side_effects(tmp_path_factory):
    """No test reads or writes the user's saved bf16/fp32 verdicts, and none measures by
    itself on a CPU with native bf16 (tests/test_defaults_precision.py turns it on)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAPARI_SAM2_PRECISION_DIR", str(tmp_path_factory.mktemp("precision")))
        mp.setenv("NAPARI_SAM2_AUTO_CALIBRATE", "0")
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real test images (``tests/data``, see its README.md)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def shared_index(shared_data) -> list[dict]:
    """The entries of ``tests/data/index.json``, one per image."""
    return json.loads((shared_data / "index.json").read_text(encoding="utf-8"))


@pytest.fixture
def no_checkpoints(tmp_path, monkeypatch) -> Path:
    """A machine on which no SAM 2 checkpoint exists anywhere the engine looks.

    ``HOME`` and the working directory point into ``tmp_path``,
    ``NAPARI_SAM2_CHECKPOINT_DIR`` is unset and the Hugging Face cache lookup finds nothing.
    """
    from napari_sam2.engine.model import checkpoints

    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.delenv(checkpoints.CHECKPOINT_DIR_ENV, raising=False)
    monkeypatch.setattr(checkpoints, "_hf_cached", lambda spec: None)
    return tmp_path


@pytest.fixture(scope="session")
def sam2_random_checkpoint(tmp_path_factory) -> Path:
    """A SAM 2.1 tiny checkpoint with random weights, saved under its official name."""
    torch = pytest.importorskip("torch")
    from napari_sam2.engine.model.load import build_model
    from napari_sam2.engine.model.registry import get_spec

    with torch.random.fork_rng():
        torch.manual_seed(SAM2_SEED)
        model = build_model(get_spec("tiny"), image_size=TEST_IMAGE_SIZE)
    path = tmp_path_factory.mktemp("sam2_ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def sam2_random_segmenter(sam2_random_checkpoint):
    """The real SAM 2 backend on CPU, loaded from the random checkpoint."""
    from napari_sam2.engine import Segmenter

    return Segmenter(
        "tiny",
        checkpoint=sam2_random_checkpoint,
        backend="sam2",
        device="cpu",
        image_size=TEST_IMAGE_SIZE,
    )


@pytest.fixture
def classical_segmenter():
    """The weight-free classical backend (deterministic oracle)."""
    from napari_sam2.engine import Segmenter

    return Segmenter(backend="classical")


# hypothesis (fuzzed-input suites): deterministic everywhere, so CI runs the same examples on
# every machine; no example database on disk; no per-example deadline (CPU speed varies).
# HYPOTHESIS_PROFILE=explore draws new random examples locally.
try:
    from hypothesis import settings as _hyp_settings
except ImportError:  # the testing extra is not installed
    _hyp_settings = None
if _hyp_settings is not None:
    import os as _os

    _hyp_settings.register_profile(
        "napari-sam2", derandomize=True, database=None, deadline=None, print_blob=True
    )
    _hyp_settings.register_profile("explore", derandomize=False, database=None, deadline=None)
    _hyp_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "napari-sam2"))
