"""The dock's lower part: one collapsible section per panel, in a scroll area.

Each section remembers whether the user left it open or closed (``QSettings``, group
``dock/sections``; ``$NAPARI_SAM2_SETTINGS`` names another INI file, which the tests use).
A section whose panel cannot apply to the bound image (the panel's ``not_applicable``
gives a reason) is collapsed, its controls are disabled and the reason is shown in its
header and inside it; once the panel applies again, the remembered state comes back.
See :mod:`._panels` for what a panel declares.
"""

from __future__ import annotations

import os

from qtpy.QtCore import QSettings, Qt
from qtpy.QtWidgets import QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

SETTINGS_ENV = "NAPARI_SAM2_SETTINGS"
GROUP = "dock/sections"


def settings() -> QSettings:
    """The plugin's settings: ``$NAPARI_SAM2_SETTINGS`` (an INI file) when set, else the
    user's napari-sam2 settings (``~/.config/napari-sam2/napari-sam2.ini`` on Linux)."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, "napari-sam2", "napari-sam2"
    )


def section_key(panel) -> str:
    """The settings key of a panel's section: its class name (stable across titles)."""
    return type(panel).__name__


class Section(QWidget):
    """A header button (arrow + title, or the reason it does not apply) over one panel."""

    def __init__(self, panel, store: QSettings, parent=None):
        super().__init__(parent)
        self.panel = panel
        self.store = store
        self.key = f"{GROUP}/{section_key(panel)}"
        self.title = panel.title() if hasattr(panel, "title") else section_key(panel)
        if hasattr(panel, "setTitle"):  # the header names it: no second title or frame
            panel.setTitle("")
            panel.setFlat(True)
        self.image = None
        self.reason = ""
        self.header = QToolButton()
        self.header.setCheckable(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        # a long reason in the title must not widen the dock: the panels set its width
        self.header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.header.setAutoRaise(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.header)
        lay.addWidget(self.note)
        lay.addWidget(panel)
        self.header.toggled.connect(self._user_toggled)
        self._show(self.remembered())

    def remembered(self) -> bool:
        """The state the user left it in, else the panel's default for the image."""
        value = self.store.value(self.key)
        if value is None:
            default = getattr(self.panel, "OPEN_BY_DEFAULT", True)
            return bool(default(self.image) if callable(default) else default)
        return str(value).lower() in ("true", "1")

    def _user_toggled(self, on: bool) -> None:
        self._show(on)
        if not self.reason:  # opening a section that does not apply is no lasting choice
            self.store.setValue(self.key, on)
            self.store.sync()

    def _show(self, on: bool) -> None:
        self.header.blockSignals(True)
        self.header.setChecked(on)
        self.header.blockSignals(False)
        self.header.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.header.setText(f"{self.title} — {self.reason}" if self.reason else self.title)
        self.header.setToolTip(self.reason)
        self.note.setVisible(on and bool(self.reason))
        self.panel.setVisible(on)

    def is_open(self) -> bool:
        return self.header.isChecked()

    def set_open(self, on: bool) -> None:
        """Open or close the section as a click on its header does (remembered)."""
        if on != self.is_open():
            self.header.setChecked(on)  # emits toggled -> _user_toggled

    def apply_to(self, image_layer) -> None:
        """Disable the panel with its reason when it cannot apply to ``image_layer``."""
        self.image = image_layer
        check = getattr(self.panel, "not_applicable", None)
        self.reason = (check(image_layer) or "") if check and image_layer is not None else ""
        self.panel.setEnabled(not self.reason)
        self.note.setText(f"{self.title}: {self.reason}." if self.reason else "")
        self._show(self.remembered() and not self.reason)


class SectionStack(QWidget):
    """The sections of the dock's panels (a panel with ``SECTION = False`` is kept
    hidden, without a section), refreshed when the dock's image changes."""

    def __init__(self, panels, image_combo, parent=None):
        super().__init__(parent)
        self.store = settings()
        self.image_combo = image_combo
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.sections: dict[str, Section] = {}
        for panel in panels:
            if not getattr(panel, "SECTION", True):
                panel.hide()
                lay.addWidget(panel)
                continue
            section = Section(panel, self.store, self)
            self.sections[section_key(panel)] = section
            lay.addWidget(section)
        lay.addStretch(1)
        image_combo.currentIndexChanged.connect(self.refresh)
        self.refresh()

    def refresh(self, *args) -> None:
        image = self.image_combo.value()
        for section in self.sections.values():
            section.apply_to(image)

    def section(self, panel_or_key) -> Section:
        """The section of a panel (or of a panel class name)."""
        key = panel_or_key if isinstance(panel_or_key, str) else section_key(panel_or_key)
        return self.sections[key]
