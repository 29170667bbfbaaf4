"""The dock widget: Qt only.  All layer logic lives in :mod:`napari_sam2.adapter`."""

from __future__ import annotations

import napari
import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from ..adapter.channels import channels_as_planes_hint
from ..adapter.layers import POSITIVE
from ..adapter.preview import PreviewLayer
from ..adapter.session import SegmentationSession
from ..engine.errors import Cancelled, NapariSam2Error
from ..engine.runtime.llvm_guard import avoid_llvm_clash
from ..engine.segmenter import Segmenter
from . import _notify
from ._bindings import Bindings
from ._commit import Committer
from ._first_use import HINT, ensure_layers
from ._layer_actions import LayerActions
from ._layers_panel import LayersPanel
from ._lifecycle import DockLifecycle
from ._model_panel import ModelPanel, describe_model
from ._panels import panel_classes
from ._qt_parts import BusyBar, PanelScrollArea
from ._sections import SectionStack
from ._segment_box import SegmentBox


class SAM2Widget(LayerActions, DockLifecycle, QWidget):
    """SAM 2 segmentation: Points/Shapes prompts in, per-object labels out.

    Everything the widget binds on layers and the viewer is released when it is taken out
    of its dock (napari's close button, ``viewer.window.remove_dock_widget``), when its
    dock is destroyed (the viewer closes) or by :meth:`close_widget`; docking the same
    widget again binds it again.  Hiding the dock keeps it working.
    """

    user_action = Signal()  # a prompt added, Segment or Commit: background work gives way

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        segmenter: Segmenter | None = None,
        autoload: bool = True,
    ):
        super().__init__()
        avoid_llvm_clash()  # napari has loaded its GL driver by now; see engine/runtime/llvm_guard.py
        self.viewer = viewer
        self.session = SegmentationSession(viewer, segmenter)
        self.preview = PreviewLayer(viewer)
        self._worker = None
        self._running = None  # the Request the worker computes
        self._pending = None
        self._after = None  # a Segment queued behind one a Commit waits for
        self._bindings = Bindings()
        self._closed = False
        self._docks = []  # the QDockWidget we are in (its destroyed signal is watched)
        self._hint = ""  # what to do next, shown with the model line until the first segment
        self._image_note = ""  # channels stacked as planes? shown like _hint (adapter.channels)
        self.live_timer = QTimer(self, singleShot=True, interval=400)  # Live: re-run after edits
        self.live_timer.timeout.connect(self.segment)
        self.committer = Committer(self)
        self._build()
        self._connect_viewer()
        if segmenter is not None:
            self._set_status(self.describe())
        elif autoload:
            self.load_model()

    # ----------------------------------------------------------------- UI
    def _build(self):
        """The daily controls (layers, model, Segment buttons, status) on top, always in
        sight; below them the other panels in collapsible sections that scroll."""
        daily = QWidget()
        lay = QVBoxLayout(daily)
        lay.setContentsMargins(0, 0, 0, 0)
        self.layers_panel = panel = LayersPanel(self.viewer, self)
        for name in (
            "image_combo",
            "points_combo",
            "shapes_combo",
            "labels_combo",
            "channel_combo",
            "new_points_btn",
            "new_shapes_btn",
            "new_labels_btn",
        ):
            setattr(self, name, getattr(panel, name))
        lay.addWidget(panel)

        self.model_panel = ModelPanel(self)
        self.model_panel.loaded.connect(self.set_segmenter)
        self.model_panel.status.connect(self._set_status)
        self.model_panel.busy.connect(lambda on: self.busy_bar.set_busy("model", on))
        lay.addWidget(self.model_panel)

        self.segment_box = box = SegmentBox()
        for name in SegmentBox.NAMES:
            setattr(self, name, getattr(box, name))
        lay.addWidget(box)
        self.busy_bar = BusyBar()
        lay.addWidget(self.busy_bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

        self.panels = [cls(self) for cls in panel_classes()]
        self.sections = SectionStack(self.panels, self.image_combo)
        self.sections_area = PanelScrollArea(self.sections)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 6, 4, 0)
        outer.addWidget(daily)
        outer.addWidget(self.sections_area, 1)

        self.new_points_btn.clicked.connect(self.new_points)
        self.new_shapes_btn.clicked.connect(self.new_shapes)
        self.new_labels_btn.clicked.connect(self.new_labels)
        self.segment_btn.clicked.connect(self.segment)
        self.commit_btn.clicked.connect(self.commit)
        self.next_btn.clicked.connect(self.next_object)
        self.candidate_btn.clicked.connect(self.next_candidate)
        self.cancel_btn.clicked.connect(self.cancel)
        self.export_btn.clicked.connect(lambda: self.export())
        for combo in self.layers_panel.layer_combos():
            combo.currentIndexChanged.connect(self._sync_layers)
        self.overwrite_check.toggled.connect(self._sync_layers)
        self.refine_check.toggled.connect(self._sync_layers)
        self.channel_combo.currentIndexChanged.connect(self._sync_layers)
        self.layers_panel.level_combo.currentIndexChanged.connect(self._sync_layers)

    # -------------------------------------------------------------- layers
    def _refresh_channels(self, event=None):
        self.session.channel = self.layers_panel.refresh_channels()

    def _sync_layers(self, *args):
        if self._closed:
            return
        s = self.session
        if s.image_layer is not self.image_combo.value():
            self.preview.clear()
            s.result = None
            s.image_layer = self.image_combo.value()
            self._refresh_channels()
            made = ensure_layers(self)
            if made:
                self._hint = HINT
            self._image_note = channels_as_planes_hint(s.image_layer) or ""
            if self._image_note:
                _notify.show_info(self._image_note)
            if made or self._image_note:
                self._set_status(self.describe())
        s.channel = self.channel_combo.currentData()
        s.level = self.layers_panel.level()
        s.points_layer = self.points_combo.value()
        s.shapes_layer = self.shapes_combo.value()
        if s.labels_layer is not self.labels_combo.value():
            s.labels_layer = self.labels_combo.value()
            s.invalidate_max()
            self._check_labels_choice()
        s.overwrite = self.overwrite_check.isChecked()
        s.refine = self.refine_check.isChecked()
        chosen = [x for x in (s.points_layer, s.shapes_layer, s.labels_layer) if x is not None]
        keep = [*chosen, self.viewer, s.image_layer]
        for owner in self._bindings.owners():  # bound: the layers chosen now only
            if not any(owner is k for k in keep):
                self._bindings.release(owner)
        for layer in chosen:
            self._bind_keys(layer)
        if s.image_layer is not None and not self._bindings.is_bound(s.image_layer):
            self._bindings.connect(s.image_layer, s.image_layer.events.data, self._image_changed)

    # --------------------------------------------------------------- model
    def load_model(self):
        """Load the model chosen in the model panel (in the background)."""
        self.model_panel.load()

    def set_segmenter(self, seg: Segmenter):
        """Use ``seg`` from now on; a running request and a shown result of the previous
        model are dropped (a preview is never committed with another model's name)."""
        self.committer.stop_waiting("the model changed while segmenting.")
        self._pending = self._after = None
        self.session.cancel()
        self.session.result = None
        self.preview.clear()
        self.session.segmenter = seg
        self.session.forget_image()
        self._set_status(self.describe())

    def describe(self) -> str:
        """The status line's model text (with the image note and first-use hint)."""
        txt = describe_model(self.session.segmenter)
        return "\n".join(t for t in (self._image_note, self._hint, txt) if t)

    def _set_status(self, text):
        self.status.setText(text)

    def _warn(self, text: str) -> None:
        """A warning notification, also kept in the status line (no stale success text)."""
        _notify.show_warning(text)
        self._set_status(text)

    def set_status(self, text: str):
        """Show ``text`` in the dock's status line (for panels)."""
        self._set_status(text)

    @property
    def closed(self) -> bool:
        """Taken out of its dock (its bindings released); panels stop their work."""
        return self._closed

    # ------------------------------------------------------------ actions
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def segment(self):
        if self._closed:
            return
        self._hint = self._image_note = ""
        self.user_action.emit()
        try:
            req = self.session.prepare()
        except NapariSam2Error as e:
            self._warn(str(e))
            return
        for note in req.prompts.notes:
            _notify.show_info(note)
        if self._worker is not None:  # newest request wins; the running one is dropped
            run = self._running
            moved = run.plane != req.plane or run.image_layer is not req.image_layer
            if moved and not self.committer.waits_for(run):
                self.session.cancel(run)  # the user moved on: stop its encode
            if self._pending is not None and self._held_for_commit(self._pending, req):
                return
            if self._pending is not None:
                self.session.cancel(self._pending)  # superseded before it ran
                self.committer.superseded(self._pending, req)
            self._pending = req
            return
        self._run(req)

    def _held_for_commit(self, pending, req) -> bool:
        """A Commit waits for the queued ``pending`` and ``req`` is on another plane (or
        image): ``pending`` still runs first and ``req`` after it (it replaces an earlier
        one held there), so the awaited object is never traded for another plane's."""
        moved = pending.plane != req.plane or pending.image_layer is not req.image_layer
        if not (moved and self.committer.waits_for(pending)):
            return False
        if self._after is not None:
            self.session.cancel(self._after)
            self.committer.superseded(self._after, req)
        self._after = req
        return True

    def _run(self, req):
        self._set_status(f"Segmenting plane {req.plane or '(2D)'}…")
        worker = create_worker(  # one step: the dock's busy bar, not a "0it" counter
            self.session.compute,
            req,
            _connect={
                "returned": self._segmented,
                "errored": self._failed,
                "finished": self._worker_done,
            },
            _start_thread=False,
        )
        self._worker = worker
        self._running = req
        self.busy_bar.set_busy("segment", True)
        worker.start()

    def segment_in_flight(self):
        """The newest Segment request still to give a result (queued or running), or None."""
        for req in (self._after, self._pending, self._running):
            if req is not None:
                return req
        return None

    def _segmented(self, result):
        if self._closed:
            return
        if self.session.accept(result):
            self._show_preview(result)
            self._set_status(self.describe())
        else:
            self._set_status("Result dropped: the slice, image or prompts changed meanwhile.")
        self.committer.segmented(result)  # a Commit pressed meanwhile waits for it

    def _failed(self, exc):
        if self._closed:
            return
        why = "the segmentation was stopped." if isinstance(exc, Cancelled) else f"{exc}"
        self.committer.segment_ended(self._running, why)
        if isinstance(exc, Cancelled):
            self._set_status("Cancelled.")
            return
        _notify.show_error(f"Segmentation failed: {exc}")
        self._set_status(f"Segmentation failed: {exc}")

    def _worker_done(self):
        self._worker = self._running = None
        try:
            self.busy_bar.set_busy("segment", False)
        except RuntimeError:  # the widget was deleted meanwhile
            return
        if self._pending is not None and not self._closed:
            req, self._pending, self._after = self._pending, self._after, None
            self._run(req)

    def cancel(self):
        self.committer.stop_waiting()
        self._pending = self._after = None
        self.session.cancel()
        if self._worker is not None:
            self._worker.quit()
        self._set_status("Cancelled.")

    def commit(self):
        self.user_action.emit()  # background work (warm-up, prefetch) gives way
        self.committer.commit()  # large objects: planned in a worker, see _commit

    def export(self, out_dir=None):
        """Mask PNGs and RGBA cut-outs of the viewed plane's objects."""
        out_dir = out_dir or QFileDialog.getExistingDirectory(self, "Export masks and cut-outs")
        if not out_dir:
            return []
        try:
            paths = self.session.export(out_dir)
        except NapariSam2Error as e:
            self._warn(str(e))
            return []
        _notify.show_info(f"Exported {len(paths)} PNG file(s) to {out_dir}.")
        return paths

    def pick_label(self, world_position):
        """Choose the label under ``world_position`` for refinement (Ctrl-click)."""
        try:
            lid = self.session.pick_label(world_position)
        except NapariSam2Error as e:
            self._warn(str(e))
            return 0
        if lid <= 0:
            _notify.show_info(
                "No label under the cursor: Ctrl-click inside an object to refine it."
            )
            return 0
        self.session.labels_layer.selected_label = lid
        self.refine_check.setChecked(True)
        msg = f"Refining label {lid}: add points or a box, then Segment [S] and Commit [C]."
        _notify.show_info(msg)
        self._set_status(msg)
        return lid

    def next_object(self):
        self.session.result = None
        self.preview.clear()
        self.refine_check.setChecked(False)  # the next object is a new one
        for layer in (self.session.points_layer, self.session.shapes_layer):
            if layer is not None and len(layer.data):
                layer.data = (
                    np.empty((0, layer.ndim)) if isinstance(layer, napari.layers.Points) else []
                )
        if isinstance(self.session.points_layer, napari.layers.Points):
            self.session.points_layer.feature_defaults[POSITIVE] = True

    def next_candidate(self):
        if self.session.result is None:
            _notify.show_info("No preview: press Segment first.")
            return
        k = self.session.cycle_candidate()
        res = self.session.result
        self._show_preview(res)
        self._set_status(f"Candidate {k + 1}.")

    def _prompts_changed(self, event=None):
        self.user_action.emit()
        if self.live_check.isChecked():
            self.live_timer.start()

    def _show_preview(self, res):
        req = res.request
        self.preview.show(
            req.image_layer, res.masks(), _placement(res), req.orientation, req.plane
        )

    def _on_slice(self, event=None):
        if self.session.result is not None and not self.session.is_current(
            self.session.result.request
        ):
            self.session.result = None
            self.preview.clear()


def _placement(result):
    return result.info.get("placement")
