"""Window/level panel: CT presets, the file's own windows, robust percentiles.

Choosing a preset sets the chosen image layer's ``contrast_limits``. The segmenter reads
the layer's contrast limits for its input (one code path), so SAM sees exactly the window
shown on screen.
"""

from __future__ import annotations

import contextlib

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel

from ..io.medical.windowing import preset_limits, preset_names
from . import _notify

PLACEHOLDER = "Choose a window…"


def _sample(layer):
    """Data for robust limits: the whole volume in memory, one middle plane when lazy."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if isinstance(data, np.ndarray):
        return data
    index = tuple(s // 2 for s in data.shape[:-2])
    return np.asarray(data[index])


def _is_medical(layer) -> bool:
    meta = getattr(layer, "metadata", None)
    return isinstance(meta, dict) and bool(meta.get("medical"))


class WindowPanel(QGroupBox):
    """A preset menu for the dock's image layer, and its current width/level.

    It applies to every grayscale image (RGB is used as it is) and opens by default for
    medical images (CT/MR: a window is part of reading them); for microscopy it starts
    collapsed, napari's own contrast slider sets the same limits.
    """

    OPEN_BY_DEFAULT = staticmethod(_is_medical)

    @staticmethod
    def not_applicable(image_layer) -> str:
        if getattr(image_layer, "rgb", False):
            return "RGB images are used as they are, without a window"
        return ""

    def __init__(self, dock):
        super().__init__("Window / level", dock)
        self.dock = dock
        self._layer = None
        form = QFormLayout(self)
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip(
            "Sets the image's contrast limits; SAM sees exactly this window. CT presets "
            "are in Hounsfield units (W width / L level)."
        )
        self.window_label = QLabel("")
        form.addRow("Preset", self.preset_combo)
        form.addRow("Window", self.window_label)
        self.preset_combo.activated.connect(self._chosen)
        dock.image_combo.currentIndexChanged.connect(self.refresh)
        self.refresh()

    # ----------------------------------------------------------------- state
    def _bind(self, layer) -> None:
        if self._layer is layer:
            return
        if self._layer is not None:
            self._layer.events.contrast_limits.disconnect(self._show_window)
        self._layer = layer
        if layer is not None:
            layer.events.contrast_limits.connect(self._show_window)

    def refresh(self, *args) -> None:
        """Fill the menu for the dock's current image layer."""
        layer = self.dock.image_combo.value()
        if layer is not None and getattr(layer, "rgb", False):
            layer = None
        self._bind(layer)
        self.preset_combo.clear()
        self.preset_combo.addItem(PLACEHOLDER)
        if layer is not None:
            self.preset_combo.addItems(preset_names(layer.metadata))
        self.preset_combo.setEnabled(layer is not None)
        self._show_window()

    def _show_window(self, event=None) -> None:
        layer = self._layer
        if layer is None:
            self.window_label.setText("—")
            return
        low, high = (float(v) for v in layer.contrast_limits)
        self.window_label.setText(f"W {high - low:.6g} / L {(high + low) / 2:.6g}")

    # ---------------------------------------------------------------- action
    def _chosen(self, index: int) -> None:
        name = self.preset_combo.itemText(index)
        if name and name != PLACEHOLDER:
            self.apply_preset(name)

    def apply_preset(self, name: str) -> tuple[float, float] | None:
        """Set the image layer's contrast limits to the preset ``name``; returns them."""
        layer = self._layer
        if layer is None:
            _notify.show_warning("Choose an image (not RGB) in the widget first.")
            return None
        try:
            low, high = (float(v) for v in preset_limits(name, _sample(layer), layer.metadata))
        except (KeyError, ValueError) as exc:
            _notify.show_warning(f"Window '{name}': {exc}")
            return None
        r_low, r_high = (float(v) for v in layer.contrast_limits_range)
        if low < r_low or high > r_high:  # a window wider than the data: widen the slider
            layer.contrast_limits_range = (min(low, r_low), max(high, r_high))
        layer.contrast_limits = (low, high)
        self.preset_combo.setCurrentIndex(max(self.preset_combo.findText(name), 0))
        self.dock.set_status(
            f"Window '{name}': {low:g} to {high:g}; SAM sees this window at the next Segment."
        )
        return (low, high)

    def close_panel(self) -> None:
        self._bind(None)
        with contextlib.suppress(TypeError, RuntimeError):
            self.dock.image_combo.currentIndexChanged.disconnect(self.refresh)
