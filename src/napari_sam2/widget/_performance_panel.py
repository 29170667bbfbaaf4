"""Performance settings: prefetch of nearby planes and the persistent embedding cache.

Also owns the dock's :class:`._background.Background` (warm-up after every model load,
prefetch).  Nothing is saved globally: the disk cache's initial state comes from
``$NAPARI_SAM2_DISK_CACHE`` as for scripts; the checkbox applies to the loaded model and
to every model loaded later in this dock.
"""

from __future__ import annotations

import contextlib

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..engine.cache import disk as _disk_cache
from . import _notify
from ._background import Background, prefetch_default


class PerformancePanel(QGroupBox):
    """Prefetch toggle and disk-cache toggle + folder for the dock's segmenter."""

    OPEN_BY_DEFAULT = False  # set once: its section starts collapsed

    def __init__(self, dock):
        super().__init__("Performance", dock)
        self.dock = dock
        self.background = Background(dock)
        lay = QVBoxLayout(self)
        seg = dock.session.segmenter
        self.prefetch_check = QCheckBox("Prefetch neighbouring planes when idle")
        self.prefetch_check.setToolTip(
            "Encode the viewed plane's neighbours in the background; any click cancels it. "
            "Off by default on CPU, where it was measured to slow clicks down."
        )
        self.prefetch_check.setChecked(prefetch_default(seg))
        self.disk_check = QCheckBox("Disk cache of embeddings")
        self.disk_check.setToolTip(
            "Keep every encoded plane on disk: reopening the same image with the same model "
            "costs no encode.  Default from $NAPARI_SAM2_DISK_CACHE."
        )
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText(str(_disk_cache.default_dir()))
        browse = QPushButton("…")
        browse.setToolTip("Choose the disk cache folder")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        for w in (self.prefetch_check, self.disk_check):
            lay.addWidget(w)
        lay.addLayout(row)
        env = _disk_cache.resolve(None)
        if env is not None:
            self.disk_check.setChecked(True)
            self.folder_edit.setText(str(env.folder))
        self.background.set_prefetch(self.prefetch_check.isChecked())
        self.prefetch_check.toggled.connect(self.background.set_prefetch)
        self.disk_check.toggled.connect(self.apply_disk_cache)
        self.folder_edit.editingFinished.connect(self.apply_disk_cache)
        dock.model_panel.loaded.connect(self._model_loaded)
        dock.user_action.connect(self.background.user_action)
        dock.viewer.dims.events.current_step.connect(self.background.slice_changed)
        self.apply_disk_cache()

    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Disk cache folder")
        if path:
            self.folder_edit.setText(path)
            self.disk_check.setChecked(True)
            self.apply_disk_cache()

    def disk_setting(self):
        """What ``Segmenter(disk_cache=...)`` gets: the folder, True (default), False."""
        if not self.disk_check.isChecked():
            return False
        return self.folder_edit.text().strip() or True

    def apply_disk_cache(self, *args) -> None:
        """Turn the disk cache on/off for the dock's segmenter (now)."""
        seg = self.dock.session.segmenter
        if seg is None:
            return
        try:
            seg.disk_cache = _disk_cache.resolve(self.disk_setting())
        except (OSError, ValueError) as e:
            seg.disk_cache = None
            _notify.show_warning(f"Disk cache off: {e}")

    def _model_loaded(self, seg) -> None:
        self.apply_disk_cache()
        self.background.warm_up(seg)

    def close_panel(self) -> None:
        """Stop background work and let the viewer go (the dock's own signals die with it)."""
        self.background.close()
        with contextlib.suppress(TypeError, ValueError):
            self.dock.viewer.dims.events.current_step.disconnect(self.background.slice_changed)
