"""The dock widget, as a small package of panels (Qt/magicgui only).

:class:`SAM2Widget` (``_dock``) holds the layer pickers, the model panel and the
Segment section; each further capability is a panel module of its own, listed in
:mod:`._panels`. A panel talks to the adapter and to the dock's documented hooks, never to
another panel's internals; its long job runs in the background through
:class:`._runner.BackgroundRun` (worker, progress, Cancel, messages).
"""

from ._dock import SAM2Widget

__all__ = ["SAM2Widget"]
