"""io/ is napari-free and faces one way: every reader and writer works in a plain script,
no io module imports napari/Qt or a room above it (adapter, widget, batch, cli), and the
suffix knowledge has one home (io/formats.py on io/suffixes.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import napari_sam2.io
from test_engine_isolation import FORBIDDEN, _imported_modules

IO_DIR = Path(napari_sam2.io.__file__).parent
SRC = IO_DIR.parent
ABOVE = ("adapter", "widget", "batch", "cli")


def _io_files() -> list[Path]:
    files = sorted(IO_DIR.rglob("*.py"))
    assert {f.parent.name for f in files} >= {"io", "tiff", "medical", "exports"}
    return files


def test_no_io_file_imports_gui_modules():
    offenders = {}
    for f in _io_files():
        bad = {m for m in _imported_modules(f) if m.split(".")[0] in FORBIDDEN}
        if bad:
            offenders[str(f.relative_to(IO_DIR))] = sorted(bad)
    assert not offenders, offenders


def test_io_does_not_import_the_rooms_above_it():
    offenders = {}
    for f in _io_files():
        package = f.relative_to(SRC).parent.parts  # ("io",) or ("io", "tiff")
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:  # resolve "..x" against the file's package
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = (node.module or "").removeprefix("napari_sam2.")
            if target.split(".")[0] in ABOVE or target in ("", "napari_sam2"):
                offenders.setdefault(f.name, []).append(ast.unparse(node))
    assert not offenders, offenders


def test_every_reader_and_writer_imports_without_napari():
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                import napari_sam2.io, napari_sam2.io.formats
                import napari_sam2.io.medical.nifti, napari_sam2.io.medical.dicom
                import napari_sam2.io.medical.writer, napari_sam2.io.medical.dicom_seg
                import napari_sam2.io.exports.tracks
                bad = sorted(m for m in sys.modules if m == "napari"
                             or m.startswith(("napari.", "qtpy", "PyQt", "PySide", "vispy")))
                assert not bad, bad
                print("ok")
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_suffix_tables_live_only_in_io():
    """batch/ and cli/ ask io.formats instead of listing image suffixes."""
    offenders = []
    for room in ("batch", "cli"):
        for f in sorted((SRC / room).rglob("*.py")):
            text = f.read_text()
            for token in ('".nii.gz"', '".nii"', '".ome.tif"', '".tiff"', '".dcm"'):
                if token in text:
                    offenders.append(f"{room}/{f.name}: {token}")
    assert not offenders, offenders


# Import cycles (through io, batch, cli or anywhere else) are found by
# tests/test_layering.py over the whole package.


def _private_imports(room: str) -> list[str]:
    """``from X import _name`` (or ``import X._mod``) in the modules of ``room`` where the
    private thing belongs to another module: a private module may be imported only from
    inside the package that holds it, a private name only by its own module."""
    found = []
    for f in sorted((SRC / room).rglob("*.py")):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        me = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = parts[:-1]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = [*base, *(node.module.split(".") if node.module else [])]
                paths = [[*target, a.name] for a in node.names]
            elif isinstance(node, ast.Import):
                paths = [a.name.split(".") for a in node.names]
            else:
                continue
            for full in paths:
                if full[0] != "napari_sam2":
                    continue
                for i, part in enumerate(full):
                    if not part.startswith("_") or part.startswith("__"):
                        continue
                    owner = ".".join(full[:i])
                    owner_is_package = (SRC.parent / Path(*full[:i]) / "__init__.py").exists()
                    if not (owner_is_package and f"{me}.".startswith(f"{owner}.")):
                        found.append(f"{me}: {'.'.join(full)}")
                    break
    return found


def test_no_private_imports_across_modules_in_io_batch_cli():
    found = [p for room in ("io", "batch", "cli") for p in _private_imports(room)]
    assert not found, found


def test_private_import_finder_finds_one(tmp_path, monkeypatch):
    """Control for the test above: a private name of another module is reported, a
    private module of the own package is not."""
    pkg = tmp_path / "napari_sam2" / "io"
    pkg.mkdir(parents=True)
    (tmp_path / "napari_sam2" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import _helper\nfrom . import _leaf\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "napari_sam2")
    assert _private_imports("io") == ["napari_sam2.io.a: napari_sam2.io.b._helper"]
