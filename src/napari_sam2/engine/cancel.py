"""The one cancel check: a ``threading.Event`` (or None) asked between steps of long work."""

from __future__ import annotations

from .errors import Cancelled


def check_cancel(cancel, message: str = "Cancelled.") -> None:
    """Raise :class:`~napari_sam2.engine.errors.Cancelled` (with ``message``) once ``cancel``
    is set; ``cancel=None`` never cancels."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(message)
