"""Which planes ``--auto`` segments in each file: ``--plane`` as one item per non-spatial axis.

Each item is an index (``12``; negative counts from the end: ``-1`` is the last plane),
``all`` (every index of that axis; also ``:`` or ``*``) or a range ``start:stop`` (stop
excluded, as in numpy; ``10:`` runs to the end).  Items are separated by commas, in the
order of the file's non-spatial axes (``T,Z`` for TZYX): ``--plane all,12`` is plane 12 of
every time point.  Without ``--plane``, ``--auto`` segments every plane.

A 2-D image has one plane: ``--plane`` does not apply to it (noted in the summary).  An
index past the end of an axis, or a number of items that is not the number of non-spatial
axes, fails that file with the reason; the other files go on.
"""

from __future__ import annotations

import itertools

from ._files import InputError

ALL = "all"
_ALL_WORDS = (ALL, ":", "*")


def parse_plane_spec(text) -> tuple[str, ...] | None:
    """``"all,12"`` → ``("all", "12")``; checks the syntax only (ValueError).

    Also takes a tuple/list of items (ints or strings); None or ``""`` gives None.
    """
    if text is None:
        return None
    items = (
        [s.strip() for s in text.replace(";", ",").split(",")]
        if isinstance(text, str)
        else [str(v).strip() for v in text]
    )
    if items == [""]:
        return None
    out = []
    for item in items:
        low = item.lower()
        if low in _ALL_WORDS:
            out.append(ALL)
            continue
        parts = low.split(":")
        try:
            if len(parts) == 1:
                int(parts[0])
            elif len(parts) == 2:
                [int(p) for p in parts if p]
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"bad --plane {text!r}: each item is an index (12), 'all' or a range "
                "start:stop (10:20), one per non-spatial axis, separated by commas"
            ) from None
        out.append(low)
    return tuple(out)


def is_single(spec) -> bool:
    """True when every item is one index (a plane, as prompts need)."""
    return spec is not None and all(":" not in s and s != ALL for s in spec)


def _axis_indices(item: str, n: int, name: str) -> list[int]:
    if item == ALL:
        return list(range(n))
    if ":" in item:
        a, b = item.split(":")
        start = int(a) if a else 0
        stop = int(b) if b else n
        idx = list(range(n))[slice(start, stop)]
        if not idx:
            raise InputError(
                f"--plane range {item} selects no plane of axis {name} ({n} planes, 0-{n - 1})"
            )
        return idx
    i = int(item)
    if not -n <= i < n:
        raise InputError(
            f"--plane index {i} is out of range for axis {name}: it has {n} planes (0-{n - 1})"
        )
    return [i % n]


def resolve_planes(spec, index_shape: tuple, axis_names: str = "") -> tuple[list, list[str]]:
    """The plane indices ``spec`` selects in an image, and notes.

    ``spec``: None (every plane), a parsed ``--plane`` spec, or an explicit list of plane
    tuples (Python API).  Raises :class:`InputError` (that file fails) when the spec does
    not fit the image.
    """
    index_shape = tuple(int(n) for n in index_shape)
    names = axis_names if len(axis_names) == len(index_shape) else "".join(
        f"{i}" for i in range(len(index_shape))
    )  # fmt: skip
    if spec is None:
        return [tuple(p) for p in itertools.product(*(range(n) for n in index_shape))], []
    if spec and not isinstance(spec[0], str):  # explicit plane tuples
        return [tuple(int(i) for i in p) for p in spec], []
    if not index_shape:
        return [()], [f"2-D image: --plane {','.join(spec)} does not apply (one plane)"]
    if len(spec) != len(index_shape):
        axes = ", ".join(f"{a}={n}" for a, n in zip(names, index_shape, strict=True))
        example = ",".join([ALL] * (len(index_shape) - 1) + [spec[-1]])
        raise InputError(
            f"--plane {','.join(spec)} gives {len(spec)} item(s) but the image has "
            f"{len(index_shape)} non-spatial axes ({axes}): give one per axis, e.g. "
            f"--plane {example}"
        )
    per_axis = [
        _axis_indices(item, n, name)
        for item, n, name in zip(spec, index_shape, names, strict=True)
    ]
    return [tuple(p) for p in itertools.product(*per_axis)], []
