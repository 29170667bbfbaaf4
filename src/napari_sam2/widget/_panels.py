"""The extra panels the dock shows below its Segment section, in this order.

A panel is a ``QWidget`` subclass built as ``Panel(dock)`` where ``dock`` is the
:class:`~napari_sam2.widget.SAM2Widget`. It may use the dock's public attributes
(``viewer``, ``session``, ``set_status(text)``) and must release whatever it connects or binds
in ``close_panel()``, which the dock calls when it is closed.
"""

from __future__ import annotations


def panel_classes() -> tuple:
    """The panel classes, imported lazily so a failing optional panel cannot break the dock."""
    from ._everything_panel import EverythingPanel
    from ._finetune_panel import FinetunePanel
    from ._follow_panel import FollowImagePanel
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
        FinetunePanel,
        PerformancePanel,
        FollowImagePanel,
        PacsPanel,
    )
