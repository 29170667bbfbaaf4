"""How the dock widget binds itself to layers and the viewer, and lets go of them again."""

from __future__ import annotations

from contextlib import suppress

import napari
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QDockWidget

from ..adapter.channels import COMBINED, channel_layers
from ..adapter.history import describe_step
from ._qt_parts import ctrl_click_picker, shift_click_negative, toggle_polarity

KEYS = {"segment": "s", "commit": "c", "next": "n", "toggle": "t"}


class DockLifecycle:
    """Mixin of :class:`~napari_sam2.widget.SAM2Widget`: binding and releasing.

    Uses the dock's ``viewer``, ``session``, ``preview``, ``panels``, ``layers_panel``,
    ``_bindings`` (a :class:`._bindings.Bindings`), ``_docks`` (the dock we are in) and
    ``_closed``.
    """

    # ------------------------------------------------------- open / close
    def _connect_viewer(self):
        """Connect the viewer's events and bind the chosen layers (again after a close)."""
        self._closed = False
        b, v = self._bindings, self.viewer
        for combo in self.layers_panel.layer_combos():
            for ev in combo.viewer_events():
                b.connect(v, ev, combo.refresh)
            combo.refresh()
        b.connect(v, v.layers.selection.events.active, self._follow_active)
        b.connect(v, v.layers.events.inserted, self._refresh_channels)
        b.connect(v, v.layers.events.removed, self._layer_removed)
        b.connect(v, v.dims.events.current_step, self._on_slice)
        b.connect(v, v.dims.events.order, self._on_slice)  # other displayed axes
        active = v.layers.selection.active
        if isinstance(active, napari.layers.Image):  # before first-use layers take the focus
            self.image_combo.set_value(active, emit=False)
        self.session.image_layer = None  # the first sync is a new image: first-use layers
        self._refresh_channels()
        self._sync_layers()

    def close_widget(self):
        """Release everything the widget bound: keys, mouse callbacks and events on the
        layers (what napari had bound before comes back), viewer events, the panels'
        connections (``close_panel()``) and the preview layer; a running job is cancelled.
        Called when the widget leaves its dock; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._pending = None
        self.session.cancel()
        self.session.result = None
        if self._worker is not None:
            self._worker.quit()
        self._bindings.release_all()
        self.committer.close()
        for panel in self.panels:
            close = getattr(panel, "close_panel", None)
            with suppress(RuntimeError):  # its Qt part is already deleted (viewer closed)
                close and close()
        self.preview.remove()
        with suppress(RuntimeError):
            self.live_timer.stop()
            self.busy_bar.set_busy("segment", False)

    def event(self, ev):
        if ev.type() == QEvent.Type.ParentChange:
            self._parent_changed()
        return super().event(ev)

    def _parent_changed(self):
        if not hasattr(self, "_docks"):  # Qt re-parents during construction
            return
        parent = self.parent()
        if isinstance(parent, QDockWidget):
            if not any(parent is d for d in self._docks):
                # a plain callable (not a bound method of this QObject): PyQt still calls
                # it when this widget is destroyed together with the dock
                parent.destroyed.connect(lambda *_a, w=self, d=parent: w._dock_destroyed(d))
            self._docks = [parent]
            if self._closed:
                self._connect_viewer()
        elif parent is None and self._docks:
            self._docks = []
            self.close_widget()  # napari takes a closed widget out of its dock

    def _dock_destroyed(self, dock):
        """Our dock is gone (the viewer closed); an old dock we left is ignored."""
        if any(dock is d for d in self._docks):
            self._docks = []
            self.close_widget()

    def _layer_removed(self, event=None):
        layer = getattr(event, "value", None)
        if layer is not None and self._bindings.is_bound(layer):
            self._bindings.release(layer)
        self._refresh_channels()

    def _follow_active(self, event=None):
        active = self.viewer.layers.selection.active
        current = self.image_combo.value()
        if not isinstance(active, napari.layers.Image) or active is current:
            return
        if (
            current is not None
            and self.session.channel in COMBINED
            and any(
                active is lay for lay in channel_layers(self.viewer, current, visible_only=False)
            )
        ):
            return  # another channel of the combined image (e.g. to set its contrast)
        self.image_combo.set_value(active)

    def _image_changed(self, event=None):
        """The image's data was replaced: a running or shown result is for the old pixels."""
        if self._worker is None and self.session.result is None:
            return
        self._pending = None
        self.session.cancel()
        self.session.result = None
        self.preview.clear()
        self._set_status("The image changed: segment again.")

    def _bind_keys(self, layer):
        """S/C/N (and T, Shift-click on points) on *our chosen* layers only; recorded in
        ``self._bindings`` so that closing the widget undoes exactly this."""
        b = self._bindings
        if layer is None or b.is_bound(layer):
            return
        b.bind_key(layer, KEYS["segment"], lambda _l: self.segment())
        b.bind_key(layer, KEYS["commit"], lambda _l: self.commit())
        b.bind_key(layer, KEYS["next"], lambda _l: self.next_object())
        if isinstance(layer, napari.layers.Points | napari.layers.Labels):
            b.mouse_drag(layer, ctrl_click_picker(self.pick_label))
        if isinstance(layer, napari.layers.Points):
            b.bind_key(layer, KEYS["toggle"], toggle_polarity)
            b.mouse_drag(layer, shift_click_negative)
        if isinstance(layer, napari.layers.Points | napari.layers.Shapes):
            b.connect(layer, layer.events.data, self._prompts_changed)
        if isinstance(layer, napari.layers.Labels):
            for key, step in (("Control-Z", "undo"), ("Control-Shift-Z", "redo")):
                b.bind_key(layer, key, self._history_step(step))
            b.connect(layer, layer.events.paint, self.session.invalidate_max)
            b.connect(layer, layer.events.data, self.session.invalidate_max)

    def _history_step(self, step: str):
        """Undo/redo that also forgets the cached max ID (napari emits no paint event for
        them, and a restored object must never get its ID handed out again) and says in
        the status line what it undid (no stale "Wrote label(s) …")."""

        def run(layer):
            done = describe_step(layer, step)
            getattr(layer, step)()
            self.session.invalidate_max()
            self._set_status(f"{done} {self.describe()}")

        return run
