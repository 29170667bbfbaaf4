"""The extra panels the dock shows below its daily controls, in this order.

A panel is a ``QWidget`` subclass (usually a ``QGroupBox``: its title names its section)
built as ``Panel(dock)`` where ``dock`` is the :class:`~napari_sam2.widget.SAM2Widget`. It
may use the dock's public attributes (``viewer``, ``session``, ``image_combo``,
``set_status(text)``) and must release whatever it connects or binds in ``close_panel()``,
which the dock calls when it is closed.

The dock puts each panel in a collapsible section (:mod:`._sections`); optional class
attributes say how:

- ``OPEN_BY_DEFAULT``: ``True``/``False``, or a function of the image layer, for a user who
  never opened or closed the section (their choice is remembered between sessions);
- ``not_applicable(image_layer) -> str``: why the panel cannot apply to this image (empty
  when it does); the section is then collapsed and disabled and shows the reason;
- ``SECTION = False``: no section, the panel is kept hidden (a helper without controls).

Adding a panel is one entry in :func:`panel_classes`.
"""

from __future__ import annotations


def panel_classes() -> tuple:
    """The panel classes, imported lazily so a failing optional panel cannot break the dock."""
    from ._everything_panel import EverythingPanel
    from ._finetune_panel import FinetunePanel
    from ._follow_panel import FollowImagePanel
    from ._measure_panel import MeasurePanel
    from ._pacs_panel import PacsPanel
    from ._performance_panel import PerformancePanel
    from ._propagate_panel import PropagatePanel
    from ._save_panel import SavePanel
    from ._window_panel import WindowPanel

    return (
        WindowPanel,
        EverythingPanel,
        PropagatePanel,
        SavePanel,
        MeasurePanel,
        FinetunePanel,
        PerformancePanel,
        FollowImagePanel,
        PacsPanel,
    )
