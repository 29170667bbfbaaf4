"""The widget's layer pickers: image, its channels, prompt layers and the output labels."""

from __future__ import annotations

import napari
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton

from ..adapter.channels import VIEWED, channel_options
from ..adapter.tiles import level_options
from ._qt_parts import LayerCombo


class LayersPanel(QGroupBox):
    """Pickers kept in sync with the viewer's layers, and the *New* buttons.

    The Channels and Resolution rows are shown only for images that have a choice there
    (several channels; a pyramid), so a plain image keeps the dock short.
    """

    CHANNELS_ROW, LEVELS_ROW = 1, 2

    def __init__(self, viewer, parent=None):
        super().__init__("Layers", parent)
        self.viewer = viewer
        self.form = form = QFormLayout(self)
        # the dock connects the pickers to the viewer (and disconnects them when closed)
        self.image_combo = LayerCombo(viewer, napari.layers.Image, False, connect=False)
        self.points_combo = LayerCombo(viewer, napari.layers.Points, connect=False)
        self.shapes_combo = LayerCombo(viewer, napari.layers.Shapes, connect=False)
        self.labels_combo = LayerCombo(viewer, napari.layers.Labels, connect=False)
        self.channel_combo = QComboBox()
        self.channel_combo.setToolTip(
            "Which channel(s) SAM sees: the viewed one, or the mean/max/RGB composite"
        )
        self.level_combo = QComboBox()
        self.level_combo.setToolTip(
            "Pyramid level SAM reads around a prompt: full resolution, or a coarser level "
            "for objects larger than the model input (only the tile around the prompt is read)"
        )
        self.new_points_btn = QPushButton("New")
        self.new_shapes_btn = QPushButton("New")
        self.new_labels_btn = QPushButton("New")
        for label, combo, btn in (
            ("Image", self.image_combo, None),
            ("Channels", self.channel_combo, None),
            ("Resolution", self.level_combo, None),
            ("Points", self.points_combo, self.new_points_btn),
            ("Boxes/masks", self.shapes_combo, self.new_shapes_btn),
            ("Labels out", self.labels_combo, self.new_labels_btn),
        ):
            row = QHBoxLayout()
            row.addWidget(combo, 1)
            if btn is not None:
                row.addWidget(btn)
            form.addRow(label, row)

    def layer_combos(self) -> tuple:
        return (self.image_combo, self.points_combo, self.shapes_combo, self.labels_combo)

    def refresh_channels(self):
        """Fill the channel picker for the chosen image (keeps the choice when it can);
        returns the current choice."""
        combo, cur = self.channel_combo, self.channel_combo.currentData()
        opts = channel_options(self.viewer, self.image_combo.value())
        combo.blockSignals(True)
        combo.clear()
        for text, choice in opts or [("Single channel", VIEWED)]:
            combo.addItem(text, choice)
        combo.setCurrentIndex(max(combo.findData(cur), 0))
        combo.setEnabled(bool(opts))
        combo.blockSignals(False)
        self.form.setRowVisible(self.CHANNELS_ROW, bool(opts))
        self.refresh_levels()
        return combo.currentData()

    def refresh_levels(self) -> None:
        """Fill the resolution picker for the chosen image (full resolution by default)."""
        combo, cur = self.level_combo, self.level_combo.currentData()
        opts = level_options(self.image_combo.value())
        combo.blockSignals(True)
        combo.clear()
        for text, level in opts or [("Full resolution", 0)]:
            combo.addItem(text, level)
        combo.setCurrentIndex(max(combo.findData(cur), 0))
        combo.setEnabled(len(opts) > 1)
        combo.blockSignals(False)
        self.form.setRowVisible(self.LEVELS_ROW, len(opts) > 1)

    def level(self) -> int:
        return int(self.level_combo.currentData() or 0)
