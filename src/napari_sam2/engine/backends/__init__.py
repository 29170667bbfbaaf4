"""Segmentation backends behind one small protocol."""

from .base import Prediction, Predictor
from .classical import ClassicalBackend

__all__ = ["ClassicalBackend", "Prediction", "Predictor", "Sam2Backend"]


def __getattr__(name):  # Sam2Backend imports torch/sam2 lazily
    if name == "Sam2Backend":
        from .sam2 import Sam2Backend

        return Sam2Backend
    raise AttributeError(name)
