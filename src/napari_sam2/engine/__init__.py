"""The engine: numpy + torch + sam2 only (no napari, no Qt).  Usable from any script."""

from .automatic import EverythingParams
from .backends import ClassicalBackend, Prediction, Predictor
from .cache.memory import EmbeddingCache
from .errors import (
    Cancelled,
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    DeviceError,
    DeviceMemoryError,
    HubUnavailableError,
    ImageError,
    LabelsError,
    ModelError,
    NapariSam2Error,
    PromptError,
    Sam2VersionError,
    UnknownModelError,
)
from .labels import LabelEdit, apply_edit, next_label_id, plan_object_write, write_object
from .model.load import load_sam2
from .model.registry import ModelSpec, get_spec
from .planes import Normalization, PlaneSource
from .prompts import Box, MaskPrompt, ObjectPrompt, Points, make_objects
from .propagation.report import ObjectTrack, PropagationReport
from .segmenter import Segmenter

__all__ = [
    "Box",
    "Cancelled",
    "CheckpointCorruptError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "ClassicalBackend",
    "DeviceError",
    "EmbeddingCache",
    "EverythingParams",
    "HubUnavailableError",
    "ImageError",
    "LabelEdit",
    "LabelsError",
    "MaskPrompt",
    "ModelError",
    "ModelSpec",
    "NapariSam2Error",
    "Normalization",
    "ObjectPrompt",
    "PlaneSource",
    "Points",
    "Prediction",
    "Predictor",
    "PromptError",
    "Segmenter",
    "UnknownModelError",
    "apply_edit",
    "get_spec",
    "load_sam2",
    "make_objects",
    "next_label_id",
    "plan_object_write",
    "write_object",
    "DeviceMemoryError",
    "Sam2VersionError",
    "ObjectTrack",
    "PropagationReport",
]
