"""``napari_sam2._runtime.prefer_huge_pages``: torch's huge-page allocation switched on at
import, only where nothing decided otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from napari_sam2._runtime import OPT_OUT_VARIABLE, TORCH_VARIABLE, prefer_huge_pages


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
def test_importing_the_package_first_reaches_torch(tmp_path):
    """In a fresh process, ``import napari_sam2`` before torch sets the variable, and a
    user's own value (here 0) is kept."""
    src = Path(__file__).resolve().parents[1] / "src"
    code = "import os, napari_sam2, torch; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"

    def seen_by_torch(**extra) -> str:
        env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", **extra}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    assert seen_by_torch() == "1"
    assert seen_by_torch(**{TORCH_VARIABLE: "0"}) == "0"
    assert seen_by_torch(**{OPT_OUT_VARIABLE: "0"}) == "None"
