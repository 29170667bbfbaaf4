"""``napari_sam2.engine.runtime.allocator.prefer_huge_pages``: torch's huge-page allocation
switched on when a model is loaded (never by ``import napari_sam2``), only where nothing
decided otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from napari_sam2.engine.runtime.allocator import (
    OPT_OUT_VARIABLE,
    TORCH_VARIABLE,
    prefer_huge_pages,
)


def test_sets_the_torch_variable_on_linux_before_torch():
    env = {}
    assert prefer_huge_pages(env, modules={}, platform="linux") is True
    assert env == {TORCH_VARIABLE: "1"}


@pytest.mark.parametrize(
    ("env", "modules", "platform"),
    [
        ({TORCH_VARIABLE: "0"}, {}, "linux"),  # the user decided
        ({TORCH_VARIABLE: "1"}, {}, "linux"),
        ({OPT_OUT_VARIABLE: "0"}, {}, "linux"),  # our opt-out
        ({}, {"torch": object()}, "linux"),  # too late: torch read it already
        ({}, {}, "darwin"),
        ({}, {}, "win32"),
    ],
)
def test_leaves_everything_alone_otherwise(env, modules, platform):
    before = dict(env)
    assert prefer_huge_pages(env, modules=modules, platform=platform) is False
    assert env == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_import_changes_nothing_and_a_model_load_reaches_torch(tmp_path):
    """In a fresh process, ``import napari_sam2`` leaves the environment alone; loading a
    SAM 2 model sets the variable before torch is imported, and a user's own value (here
    0) or the opt-out is kept."""
    src = Path(__file__).resolve().parents[1] / "src"
    code = (
        "import os, sys, napari_sam2\n"
        "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)\n"
        "napari_sam2.Segmenter(backend='sam2', random_weights=True, device='cpu', image_size=256)\n"
        "import torch\n"
        "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))\n"
    )

    def seen(**extra) -> list[str]:
        env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **extra}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    assert seen() == ["None", "False", "1"]
    assert seen(**{TORCH_VARIABLE: "0"}) == ["0", "False", "0"]
    assert seen(**{OPT_OUT_VARIABLE: "0"}) == ["None", "False", "None"]
