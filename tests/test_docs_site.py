"""The documentation site builds with ``mkdocs build --strict``: every page in the navigation
exists, no link points to a missing page, and the API reference finds every public name it
documents (napari_sam2's lazily exported names through docs/_ext/public_api.py).

mkdocs, mkdocs-material and mkdocstrings come with the ``docs`` extra, which
``scripts/setup.sh`` installs: a missing one is a failure here, not a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _nav_pages(items) -> list[str]:
    out = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return out


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    pythonpath = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath, "NO_MKDOCS_2_WARNING": "1"}
    build = ["build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)]
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", *build],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert (site / "index.html").is_file() and (site / "search" / "search_index.json").is_file()
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    names = ("Segmenter", "segment_files", "set_image", "propagate", "CheckpointNotFoundError")
    for name in names:
        assert name in api, f"the API reference lacks {name}"


def test_every_page_is_in_the_navigation():
    """A page left out of the nav is unreachable on the site (mkdocs only says so as info)."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    nav = set(_nav_pages(config["nav"]))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


def test_readme_links_exist():
    """README.md is not part of the site (mkdocs does not check it): its relative links must
    name files of the repository."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))]
    assert len(local) > 20, local
    missing = sorted({t for t in local if not (ROOT / t).exists()})
    assert not missing, f"README.md links to missing files: {missing}"
