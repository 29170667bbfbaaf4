"""Griffe extension for the docs site (mkdocs.yml): the API pages name public objects as
users import them (``napari_sam2.Segmenter``), not where they are defined.

``napari_sam2`` exports its public names lazily (a module ``__getattr__``), which static
analysis cannot see. For every name in a listed package's ``__all__`` that griffe did not
find, this imports the package, asks it for the object and adds an alias to wherever the
object is defined now, so the pages keep working when internal modules move.
"""

from __future__ import annotations

import importlib

import griffe


class PublicNames(griffe.Extension):
    def __init__(self, packages: list[str] | None = None) -> None:
        super().__init__()
        self.packages = set(packages or ["napari_sam2"])

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.path not in self.packages:
            return
        module = importlib.import_module(pkg.path)
        for name in getattr(module, "__all__", ()):
            if name in pkg.members:
                continue
            obj = getattr(module, name)
            where, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if where and qualname:
                pkg.set_member(name, griffe.Alias(name, f"{where}.{qualname}", parent=pkg))
