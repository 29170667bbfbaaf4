"""Typed exceptions of the engine.

Every message says what went wrong *and* what the user can do about it.
"""

from __future__ import annotations


class NapariSam2Error(Exception):
    """Base class of all napari-sam2 errors."""


class ModelError(NapariSam2Error):
    """A SAM 2 model could not be set up."""


class UnknownModelError(ModelError, ValueError):
    """The requested model size / version is not in the registry."""


class CheckpointNotFoundError(ModelError, FileNotFoundError):
    """No checkpoint file could be found for the requested model."""


class CheckpointCorruptError(ModelError):
    """The checkpoint file exists but cannot be read (truncated or not a checkpoint)."""


class CheckpointMismatchError(ModelError):
    """The checkpoint does not fit the chosen model size."""


class HubUnavailableError(ModelError):
    """The Hugging Face hub cannot be used (not installed, offline or unreachable)."""


class Sam2VersionError(ModelError):
    """The installed ``sam2`` package is not a version this plugin was tested with (or
    lacks the parts of its API the backend relies on)."""


class DeviceMemoryError(ModelError):
    """The device ran out of memory: try a smaller model, bf16 or the CPU."""


class DeviceError(ModelError, ValueError):
    """The requested device does not exist on this machine."""


class ImageError(NapariSam2Error, ValueError):
    """The image cannot be used (wrong dimensions, no image set, bad channel...)."""


class PromptError(NapariSam2Error, ValueError):
    """A prompt is invalid: empty, outside the image, wrong shape."""


class LabelsError(NapariSam2Error, ValueError):
    """The labels array cannot take the result (shape or dtype mismatch)."""


class Cancelled(NapariSam2Error):
    """The computation was cancelled by the caller (its ``cancel`` event was set)."""


class MissingExtraError(ModelError, ImportError):
    """An optional dependency (a pip extra such as ``napari-sam2[transformers]``) is not
    installed."""
