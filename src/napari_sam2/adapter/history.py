"""What an undo/redo step of a Labels layer changes, in words for the dock's status line.

napari keeps a Labels layer's history as a list of steps, each a list of atoms: the
3-tuple ``(indices, old_values, new_values)`` of ``data_setitem`` or a masked paint atom
(``old_values``/``new_value``).  Only the values of the step about to be replayed are read
(as many as the edit wrote), never the whole array.  If napari's layout is not the one
expected, the description is generic instead of wrong.
"""

from __future__ import annotations

import numpy as np

UNDO, REDO = "undo", "redo"
_SHOWN_IDS = 6  # more IDs than this are shown as a range and a count


def _values(atom) -> tuple[np.ndarray, np.ndarray]:
    """(values before the edit, values after it) of one history atom."""
    if isinstance(atom, tuple) and len(atom) == 3:
        _, old, new = atom
    else:
        old, new = atom.old_values, atom.new_value
    return np.asarray(old).ravel(), np.asarray(new).ravel()


def _ids(values: list[np.ndarray]) -> list[int]:
    if not values:
        return []
    u = np.unique(np.concatenate(values))
    return [int(v) for v in u if v != 0]


def format_ids(ids: list[int]) -> str:
    """``3`` / ``1, 2`` / ``1–250 (250 labels)`` for long lists."""
    if len(ids) > _SHOWN_IDS:
        return f"{ids[0]}–{ids[-1]} ({len(ids)} labels)"
    return ", ".join(map(str, ids))


def describe_step(layer, step: str) -> str:
    """What ``layer.undo()`` (``step="undo"``) or ``layer.redo()`` is about to do.

    ``"Undid label(s) 3."``, ``"Undid label(s) 4. Label(s) 1 back."`` (an overwrite undone),
    ``"Redid label(s) 3."``, ``"Nothing to undo."``.  Call it *before* the step.
    """
    verb = "Undid" if step == UNDO else "Redid"
    history = getattr(layer, "_undo_history" if step == UNDO else "_redo_history", None)
    if history is not None and len(history) == 0:
        return f"Nothing to {step}."
    try:
        item = list(history[-1])
        olds, news = zip(*(_values(a) for a in item), strict=True) if item else ((), ())
    except (TypeError, AttributeError, IndexError, ValueError):
        return f"{verb} the last labels edit."
    # undo and redo both concern the edit's *new* values (taken away / written again);
    # the objects it had overwritten come back on undo and go again on redo
    written = _ids(list(news))
    other = [i for i in _ids(list(olds)) if i not in written]
    if not written and not other:
        return f"{verb} the last labels edit."
    text = f"{verb} label(s) {format_ids(written)}." if written else f"{verb} an erase."
    if other:
        text += f" Label(s) {format_ids(other)} " + ("back." if step == UNDO else "removed again.")
    return text
