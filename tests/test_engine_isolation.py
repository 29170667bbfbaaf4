"""The engine is importable and usable without napari or Qt."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import napari_sam2.engine

ENGINE_DIR = Path(napari_sam2.engine.__file__).parent
FORBIDDEN = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_engine_import_pulls_no_gui():
    res = _run(
        """
        import sys
        import napari_sam2.engine
        bad = sorted(
            m for m in sys.modules
            if m == "napari" or m.startswith(("napari.", "qtpy", "PyQt", "PySide", "magicgui", "vispy"))
        )
        assert not bad, bad
        print("ok")
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_engine_runs_a_segmentation_without_gui():
    """The scripted API end to end (classical backend), still without napari/Qt."""
    res = _run(
        """
        import sys
        import numpy as np
        from napari_sam2.engine import Segmenter
        from napari_sam2.engine.backends import Sam2Backend  # lazily imports torch/sam2
        img = np.zeros((40, 50), np.uint16)
        img[5:15, 30:45] = 3000
        labels = np.zeros(img.shape, np.int32)
        seg = Segmenter(backend="classical").set_image(img)
        assert seg.segment_into(labels, points=[(10, 37)]) == [1]
        assert (labels[5:15, 30:45] == 1).all()
        assert (labels[4:16, 29:46] == 1).sum() == (labels == 1).sum()  # within 1 px
        bad = [m for m in sys.modules if m == "napari" or m.startswith(("napari.", "qtpy", "PyQt"))]
        assert not bad, bad
        print("ok")
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def test_no_engine_file_imports_gui_modules():
    files = sorted(ENGINE_DIR.rglob("*.py"))
    assert len(files) >= 10  # engine/*.py and engine/backends/*.py
    offenders = {}
    for f in files:
        bad = {m for m in _imported_modules(f) if m.split(".")[0] in FORBIDDEN}
        if bad:
            offenders[str(f.relative_to(ENGINE_DIR))] = sorted(bad)
    assert not offenders, offenders


def test_engine_does_not_import_the_rest_of_the_package():
    """Dependencies point one way: the adapter/widget/io/cli use the engine, never back."""
    offenders = {}
    for f in sorted(ENGINE_DIR.rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                depth = len(f.relative_to(ENGINE_DIR).parts)  # 1 in engine/, 2 in backends/
                leaves = node.level > depth  # relative import above engine/
                absolute = node.level == 0 and (node.module or "").startswith("napari_sam2")
                if leaves or (absolute and not node.module.startswith("napari_sam2.engine")):
                    offenders.setdefault(f.name, []).append(ast.unparse(node))
    assert not offenders, offenders


def test_import_checker_sees_gui_imports(tmp_path):
    """Control: the AST check above does catch the import styles it claims to."""
    f = tmp_path / "bad.py"
    f.write_text(
        "import numpy\n"
        "import qtpy.QtWidgets\n"
        "from napari.layers import Labels\n"
        "def f():\n"
        "    from magicgui import magicgui\n"
        "    import importlib\n"
        "    importlib.import_module('PyQt6')\n"
    )
    found = {m.split(".")[0] for m in _imported_modules(f)}
    assert {"qtpy", "napari", "magicgui", "PyQt6"} <= found
