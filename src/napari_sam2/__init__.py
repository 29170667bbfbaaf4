"""napari-sam2: click an object, get a clean instance label.

The public scripted API lives in :mod:`napari_sam2.engine` and is re-exported here
lazily (importing the package does not import torch).
"""

try:
    from ._version import version as __version__
except ImportError:  # not installed (e.g. running from a source tree)
    __version__ = "0+unknown"

_ENGINE_NAMES = {
    "Segmenter",
    "Box",
    "Points",
    "MaskPrompt",
    "ObjectPrompt",
    "Prediction",
    "PlaneSource",
    "write_object",
    "plan_object_write",
    "apply_edit",
    "next_label_id",
    "get_spec",
    "load_sam2",
    "NapariSam2Error",
    "Cancelled",
    "ModelError",
    "CheckpointNotFoundError",
    "CheckpointCorruptError",
    "CheckpointMismatchError",
    "HubUnavailableError",
    "ImageError",
    "PromptError",
    "LabelsError",
    "DeviceError",
    "UnknownModelError",
    "ClassicalBackend",
    "DeviceMemoryError",
    "Sam2VersionError",
    "ObjectTrack",
    "PropagationReport",
}

# names served from one engine module each (imported on first use; numpy/scipy only)
_MODULE_NAMES = {"measure_labels": "measure", "Measurements": "measure"}

__all__ = ["__version__", *sorted(_ENGINE_NAMES | set(_MODULE_NAMES))]


def __getattr__(name):
    if name in _ENGINE_NAMES:
        from . import engine

        return getattr(engine, name)
    if name in _MODULE_NAMES:
        from importlib import import_module

        return getattr(import_module(f".engine.{_MODULE_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'napari_sam2' has no attribute {name!r}")
