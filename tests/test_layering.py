"""The package's layering, checked on the source: no import cycles between its own modules
(imports inside functions count, ``if TYPE_CHECKING:`` blocks do not) and no import of
another module's ``_private`` names.  The contracts between the rooms (engine < io <
adapter < widget | batch < cli; engine and io free of napari/Qt) are in pyproject.toml's
``[tool.importlinter]`` and checked by ``lint-imports`` (test at the end).

The package has none of either: a new one fails here.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_sam2

PKG_DIR = Path(napari_sam2.__file__).parent
PKG = "napari_sam2"

# ``from X import _name`` of a private *module* inside its own package is fine
# (e.g. ``from ._sam_common import ...``); only a ``_name`` imported from another module is.


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG_DIR).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG_DIR.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str | None:
    """The package-relative module an ImportFrom names (None: not this package)."""
    if node.level == 0:
        mod = node.module or ""
        if mod != PKG and not mod.startswith(PKG + "."):
            return None
        return mod[len(PKG) + 1 :] if mod != PKG else ""
    base = name.split(".") if name else []
    if path.name != "__init__.py":
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]):
    """``(edges, private)``: module -> the package modules it imports, and the private names
    imported from another module, as (importer, imported module, name)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private: set[tuple[str, str, str]] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith(PKG + "."):
                        target = a.name[len(PKG) + 1 :]
                        while target and target not in modules:
                            target = target.rpartition(".")[0]
                        if target != name:
                            edges[name].add(target)
                continue
            target = _resolve(name, path, node)
            if target is None:
                continue
            for a in node.names:
                sub = f"{target}.{a.name}" if target else a.name
                if sub in modules:  # ``from . import module``
                    edges[name].add(sub)
                    continue
                if target in modules and target != name:
                    edges[name].add(target)
                if a.name.startswith("_") and not a.name.startswith("__"):
                    private.add((name, target, a.name))
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph(_modules())


def test_no_import_cycle(graph):
    edges, _ = graph
    found = [sorted(c) for c in cycles(edges)]
    assert not found, found


def test_no_private_name_imported_from_another_module(graph):
    _, private = graph
    assert not private, sorted(private)


def test_engine_top_level_stays_small():
    """engine/ keeps its core flat; the rest lives in sub-packages (issue 21)."""
    top = sorted(p.name for p in (PKG_DIR / "engine").glob("*.py"))
    assert len(top) <= 12, top


def test_every_folder_of_modules_is_a_regular_package():
    """pyproject's ``packages.find`` ships only folders with an ``__init__.py``: a folder of
    modules without one imports from a source tree but is missing from the wheel."""
    missing = sorted(
        str(d.relative_to(PKG_DIR))
        for d in {p.parent for p in PKG_DIR.rglob("*.py")}
        if not (d / "__init__.py").exists()
    )
    assert missing == []


def test_checker_sees_cycles_through_function_imports(tmp_path):
    """Control: imports inside functions count, TYPE_CHECKING ones do not."""
    pkg = tmp_path / "napari_sam2"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .a import _helper\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n"
    )
    (pkg / "sub" / "d.py").write_text("import napari_sam2.sub.c\n")
    global PKG_DIR
    saved = PKG_DIR
    PKG_DIR = pkg
    try:
        edges, private = import_graph(_modules())
    finally:
        PKG_DIR = saved
    assert cycles(edges) == [frozenset({"sub.a", "sub.b"})]
    assert edges["sub.c"] == set() and edges["sub.d"] == {"sub.c"}
    assert private == {("sub.b", "sub.a", "_helper")}


def _lint_imports() -> str | None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    return exe or shutil.which("lint-imports")


@pytest.mark.skipif(_lint_imports() is None, reason="import-linter is not installed")
def test_import_contracts():
    """pyproject.toml's [tool.importlinter] contracts (engine < io < adapter < widget |
    batch < cli; engine and io never import napari, Qt or magicgui)."""
    root = PKG_DIR.parent.parent
    res = subprocess.run(
        [_lint_imports(), str(root / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    out = res.stdout + res.stderr
    broken = {
        line.split(" BROKEN")[0].strip()
        for line in out.splitlines()
        if line.rstrip().endswith("BROKEN")
    }
    assert "Contracts:" in out or "contracts" in out.lower(), out
    assert not (broken - KNOWN_BROKEN_CONTRACTS), out


# no contract may be broken; a name here would need an issue explaining why
KNOWN_BROKEN_CONTRACTS: set[str] = set()
