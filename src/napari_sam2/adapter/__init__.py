"""The napari adapter: layers ↔ engine prompts, world ↔ data coordinates, undoable writes.

No Qt here: everything is testable with a plain ``napari.Viewer``/layers.
"""

from .channels import ImageSource, channel_options, image_source
from .coords import current_plane, layer_to_image_data
from .layers import (
    labels_matching,
    new_labels_layer,
    new_points_layer,
    new_shapes_layer,
    spatial_shape,
    write_edits,
)
from .prompts import PromptSet, collect_prompts

__all__ = [
    "ImageSource",
    "PromptSet",
    "channel_options",
    "collect_prompts",
    "current_plane",
    "image_source",
    "labels_matching",
    "layer_to_image_data",
    "new_labels_layer",
    "new_points_layer",
    "new_shapes_layer",
    "spatial_shape",
    "write_edits",
]
