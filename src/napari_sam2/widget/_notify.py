"""The dock's notifications (napari's info/warning/error toasts), in one module.

The dock and its commit action call these through the module (``_notify.show_warning``),
so a test replaces them here, in one place, to read what the user was told.
"""

from __future__ import annotations

from napari.utils import notifications


def show_info(msg: str) -> None:
    notifications.show_info(msg)


def show_warning(msg: str) -> None:
    notifications.show_warning(msg)


def show_error(msg: str) -> None:
    notifications.show_error(msg)
