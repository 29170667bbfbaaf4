"""adapter/ and widget/ import one way (issue 21): no import cycle that runs through one of
their modules (imports inside functions count) and no import of another module's
``_private`` name (a private *module* of the same package, ``from . import _notify``, is
the package's own business)."""

from __future__ import annotations

import ast
from pathlib import Path

import napari_sam2

ROOT = Path(napari_sam2.__file__).parent
ROOMS = ("napari_sam2.adapter", "napari_sam2.widget")


def _modules() -> dict[str, tuple[Path, list[str]]]:
    """Module name -> (file, package parts)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            out[".".join(parts)] = (path, parts)
        else:
            out[".".join(parts)] = (path, parts[:-1])
    return out


def _imports(mods):
    """Module -> [(imported module, imported names)] for every import, in functions too."""
    graph = {}
    for name, (path, pkg) in mods.items():
        edges = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = pkg[: len(pkg) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [a.name for a in node.names]
                subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods]
                if len(subs) == len(names):  # from a package import its modules
                    edges += [(s, []) for s in subs]
                else:
                    edges.append((mod, [n for n in names if f"{mod}.{n}" not in mods]))
            elif isinstance(node, ast.Import):
                edges += [(a.name, []) for a in node.names]
        graph[name] = [(m, ns) for m, ns in edges if m in mods and m != name]
    return graph


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in {m for m, _ in graph[v]}:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _in_rooms(name: str) -> bool:
    return name.startswith(ROOMS)


def test_no_import_cycle_through_adapter_or_widget():
    cycles = [c for c in _cycles(_imports(_modules())) if any(map(_in_rooms, c))]
    assert cycles == []


def test_adapter_and_widget_import_no_private_names():
    graph = _imports(_modules())
    bad = [
        f"{mod} imports {target}.{n}"
        for mod, edges in graph.items()
        if _in_rooms(mod)
        for target, names in edges
        for n in names
        if n.startswith("_") and not n.endswith("__")
    ]
    assert bad == []


def test_the_checker_sees_a_cycle_and_a_private_import():
    """The checks above can fail: a made-up cycle and private import are found."""
    graph = {"a": [("b", ["_x"])], "b": [("a", [])], "c": [("a", [])]}
    assert _cycles(graph) == [["a", "b"]]
    assert [n for _, ns in graph["a"] for n in ns if n.startswith("_")] == ["_x"]
