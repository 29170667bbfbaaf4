"""Layers → fine-tuning data: which images and Labels layers train the model.

The bound pair (the widget's image and its output Labels layer), or every open Image layer
with a Labels layer of its shape holding objects.  Each image is read exactly as the
widget reads it for segmenting (:func:`~napari_sam2.adapter.channels.image_source`: same
channels, same contrast limits), so the model is trained on the intensities it will see.
The labels are copied: editing them during training changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.errors import ImageError, LabelsError
from .channels import VIEWED, image_source
from .layers import channel_axis_of, labels_matching


@dataclass
class TrainingData:
    """The arguments :func:`napari_sam2.engine.training.finetune.finetune` takes from the layers."""

    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    image_kwargs: list = field(default_factory=list)
    names: list = field(default_factory=list)

    def kwargs(self) -> dict:
        return {
            "images": self.images,
            "labels": self.labels,
            "image_kwargs": self.image_kwargs,
            "names": self.names,
        }


def _has_objects(layer) -> bool:
    return bool(np.any(np.asarray(layer.data) > 0))


def _add(data: TrainingData, viewer, image, labels, choice, viewed_index) -> None:
    src = image_source(viewer, image, choice, viewed_index)
    data.images.append(src.data)
    data.image_kwargs.append(dict(src.kwargs))
    data.labels.append(np.array(labels.data, copy=True))
    data.names.append(f"{image.name} + {labels.name}")


def training_data(session, *, all_images: bool = False) -> TrainingData:
    """The session's image + labels, or (``all_images``) every image with labels.

    Raises :class:`ImageError`/:class:`LabelsError` with what to do when nothing fits.
    """
    import napari

    viewer = session.viewer
    data = TrainingData()
    bound_img, bound_lab = session.image_layer, session.labels_layer
    if not all_images:
        if bound_img is None:
            raise ImageError("No image layer: open an image and choose it in the widget.")
        why = labels_matching(bound_lab, bound_img)
        if why is not None:
            raise LabelsError(why)
        if not _has_objects(bound_lab):
            raise LabelsError(
                f"Labels layer '{bound_lab.name}' holds no object: paint or segment some "
                "objects first (they are the training targets)."
            )
        index = session.viewed_index() if channel_axis_of(bound_img) is not None else None
        _add(data, viewer, bound_img, bound_lab, session.channel, index)
        return data
    labels_layers = [lay for lay in viewer.layers if isinstance(lay, napari.layers.Labels)]
    for img in viewer.layers:
        if not isinstance(img, napari.layers.Image):
            continue
        fits = [
            lab for lab in labels_layers if labels_matching(lab, img) is None and _has_objects(lab)
        ]
        if not fits:
            continue
        bound_fits = img is bound_img and any(lab is bound_lab for lab in fits)
        lab = bound_lab if bound_fits else fits[0]
        if img is bound_img:
            index = session.viewed_index() if channel_axis_of(img) is not None else None
            _add(data, viewer, img, lab, session.channel, index)
        else:
            choice = "mean" if channel_axis_of(img) is not None else VIEWED
            _add(data, viewer, img, lab, choice, None)
    if not data.images:
        raise LabelsError(
            "No image has a Labels layer of its shape with objects: paint or segment some "
            "objects first (they are the training targets)."
        )
    return data
