"""A record of what the dock binds on napari objects, so that it can be undone exactly.

Keys, mouse callbacks and event connections are recorded per *owner* (a layer, or the
viewer): :meth:`Bindings.release` undoes one owner's (a layer that was removed or is no
longer chosen), :meth:`Bindings.release_all` everything (the dock was closed).  A key that
napari or the user bound before is bound back; a key somebody re-bound after us is left
alone.  Pure Python: safe to call while Qt objects are being destroyed.
"""

from __future__ import annotations

import logging

from napari.utils.key_bindings import coerce_keybinding

log = logging.getLogger(__name__)


class Bindings:
    """Undo records of bound keys, mouse callbacks and connected events, per owner."""

    def __init__(self):
        self._undo: dict[int, tuple[object, list]] = {}

    def _record(self, owner, undo) -> None:
        self._undo.setdefault(id(owner), (owner, []))[1].append(undo)

    def is_bound(self, owner) -> bool:
        return id(owner) in self._undo

    def owners(self) -> list:
        return [owner for owner, _ in self._undo.values()]

    def connect(self, owner, emitter, callback) -> None:
        """``emitter.connect(callback)``, disconnected on release."""
        emitter.connect(callback)
        self._record(owner, lambda: emitter.disconnect(callback))

    def bind_key(self, layer, key: str, func) -> None:
        """Bind ``key`` on the layer's own keymap; release restores what was there."""
        previous = layer.bind_key(key, func, overwrite=True)
        binding = coerce_keybinding(key)

        def undo():
            if layer.keymap.get(binding) is func:  # still ours: nobody re-bound it since
                layer.bind_key(key, previous, overwrite=True)  # None unbinds

        self._record(layer, undo)

    def mouse_drag(self, layer, callback) -> None:
        """Put ``callback`` first in the layer's mouse drag callbacks."""
        layer.mouse_drag_callbacks.insert(0, callback)

        def undo():
            cbs = layer.mouse_drag_callbacks
            for i, cb in enumerate(cbs):
                if cb is callback:
                    del cbs[i]
                    break

        self._record(layer, undo)

    def release(self, owner) -> None:
        """Undo everything bound on ``owner`` (newest first)."""
        _, undos = self._undo.pop(id(owner), (None, []))
        for undo in reversed(undos):
            try:
                undo()
            except (RuntimeError, ValueError, TypeError) as e:  # a half-destroyed object
                log.debug("releasing a binding on %r failed: %s", owner, e)

    def release_all(self, *_args) -> None:
        for owner in self.owners():
            self.release(owner)
