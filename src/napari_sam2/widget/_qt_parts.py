"""Small Qt pieces of the dock widget: a synced layer combo box, point-polarity controls and
the scroll area that holds the panels."""

from __future__ import annotations

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QComboBox, QFrame, QProgressBar, QScrollArea

from ..adapter.layers import POSITIVE
from . import _notify

NONE = "—"


class LayerCombo(QComboBox):
    """A combo box listing the viewer's layers of one type, kept in sync."""

    def __init__(self, viewer, layer_type, allow_none=True, connect=True):
        super().__init__()
        self.viewer, self.layer_type, self.allow_none = viewer, layer_type, allow_none
        if connect:  # else the owner connects :meth:`refresh` to :meth:`viewer_events`
            for ev in self.viewer_events():
                ev.connect(self.refresh)
        self.refresh()

    def viewer_events(self) -> tuple:
        """The viewer events after which :meth:`refresh` must run."""
        return (self.viewer.layers.events.inserted, self.viewer.layers.events.removed)

    def layers(self):
        return [lay for lay in self.viewer.layers if isinstance(lay, self.layer_type)]

    def refresh(self, event=None):
        """Re-list the layers; keeps the choice while its layer exists, and emits
        ``currentIndexChanged`` when the choice changed (e.g. its layer was removed)."""
        cur = self.value()
        layers = self.layers()
        kept = any(cur is lay for lay in layers)
        self.blockSignals(True)
        self.clear()
        if self.allow_none:
            self.addItem(NONE, None)
        for lay in layers:
            self.addItem(lay.name, lay)
        self.blockSignals(False)
        self.set_value(cur if kept else None, emit=False)
        if self.value() is not cur:
            self.currentIndexChanged.emit(self.currentIndex())

    def value(self):
        return self.currentData()

    def set_value(self, layer, emit=True):
        i = self.findData(layer) if layer is not None else (0 if self.allow_none else -1)
        if i < 0 and self.count():
            i = self.count() - 1
        self.blockSignals(not emit)
        self.setCurrentIndex(max(i, 0) if self.count() else -1)
        self.blockSignals(False)


class BusyBar(QProgressBar):
    """An indeterminate busy indicator, shown while any job (segment, model load) runs.

    A segment or a model load is one step: a moving bar says "working", where napari's
    progress counter would only ever read "0it".
    """

    def __init__(self):
        super().__init__()
        self.setRange(0, 0)
        self.setTextVisible(False)
        self.setMaximumHeight(8)
        self.jobs: set[str] = set()
        self.hide()

    def set_busy(self, job: str, on: bool) -> None:
        (self.jobs.add if on else self.jobs.discard)(job)
        self.setVisible(bool(self.jobs))


def toggle_polarity(layer):
    """Flip the polarity of new points (and of the selected ones)."""
    new = not bool(layer.feature_defaults[POSITIVE][0])
    layer.feature_defaults[POSITIVE] = new
    sel = list(layer.selected_data)
    if sel:
        feats = layer.features.copy()
        feats.loc[sel, POSITIVE] = new
        layer.features = feats
        layer.refresh_colors()
    _notify.show_info(f"New points are {'positive' if new else 'negative'}.")


def shift_click_negative(layer, event):
    """Shift-click in add mode adds a negative point.

    napari adds the point on release, after this callback: the polarity is restored
    once the event is fully processed.
    """
    if layer.mode != "add" or "Shift" not in event.modifiers:
        return
    old = bool(layer.feature_defaults[POSITIVE][0])
    layer.feature_defaults[POSITIVE] = False
    yield
    while event.type == "mouse_move":
        yield

    def restore():
        layer.feature_defaults[POSITIVE] = old

    QTimer.singleShot(0, restore)


PICK_MODIFIERS = ("Control", "Meta")  # Ctrl (Cmd on macOS)
DRAWING_MODES = ("paint", "fill", "erase", "polygon")


def ctrl_click_picker(pick):
    """A mouse callback: Ctrl/Cmd-click calls ``pick(world_position)``.

    On a Points layer in add mode napari adds a point on release; that point is taken
    away again (the click picked a label, it was not a prompt).
    """

    def on_click(layer, event):
        if not any(m in event.modifiers for m in PICK_MODIFIERS):
            return
        if layer.mode in DRAWING_MODES:  # Labels painting: leave the click to napari
            return
        n_before = len(layer.data) if layer.mode == "add" else None
        yield
        while event.type == "mouse_move":
            yield
        position = tuple(event.position)

        def finish():
            if n_before is not None and len(layer.data) > n_before:
                layer.selected_data = set(range(n_before, len(layer.data)))
                layer.remove_selected()
            pick(position)

        QTimer.singleShot(0, finish)

    return on_click


class PanelScrollArea(QScrollArea):
    """Scrolls the panels vertically and is always as wide as their widest row, so nothing
    is clipped on the right (the rows' width is only known once Qt has laid them out)."""

    def __init__(self, content):
        super().__init__(widgetResizable=True, frameShape=QFrame.NoFrame)
        self.setWidget(content)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        content.installEventFilter(self)
        self.fit_width()

    def fit_width(self) -> None:
        bar = self.verticalScrollBar().sizeHint().width()
        width = self.widget().minimumSizeHint().width() + bar
        if width != self.minimumWidth():
            self.setMinimumWidth(width)

    def eventFilter(self, obj, event):
        if obj is self.widget() and event.type() == QEvent.LayoutRequest:
            self.fit_width()
        return super().eventFilter(obj, event)

    def showEvent(self, event):
        self.fit_width()
        super().showEvent(event)
