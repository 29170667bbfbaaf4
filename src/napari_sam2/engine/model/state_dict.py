"""Reading a SAM 2 checkpoint's state dict: clear errors for bad files, and which size and
version it looks like, before anything is built."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from ..errors import CheckpointCorruptError, CheckpointMismatchError, CheckpointNotFoundError
from .registry import ARCH, ModelSpec


def read_state_dict(path) -> dict:
    """``torch.load(weights_only=True)`` with clear errors for bad files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"Checkpoint file {str(path)!r} does not exist.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as e:
        raise CheckpointCorruptError(
            f"Checkpoint {str(path)!r} ({path.stat().st_size} bytes) cannot be read — it is "
            f"probably truncated or not a PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]}). "
            "Download it again."
        ) from e
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not sd:
        raise CheckpointCorruptError(
            f"Checkpoint {str(path)!r} holds no model weights (expected a dict with a 'model' state dict)."
        )
    return sd


def guess_size(state_dict: dict) -> str | None:
    """Which registry size a state dict looks like (from the trunk's width and depth)."""
    w = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if w is None:
        return None
    blocks = {k.split(".")[3] for k in state_dict if k.startswith("image_encoder.trunk.blocks.")}
    arch = (int(w.shape[0]), len(blocks))
    for size, a in ARCH.items():
        if a == arch:
            return size
    return None


def guess_version(state_dict: dict) -> str:
    return "2.1" if "no_obj_embed_spatial" in state_dict else "2.0"


def _looks_like(state_dict: dict) -> str:
    size = guess_size(state_dict)
    if size:
        return f"it looks like a SAM {guess_version(state_dict)} '{size}' checkpoint"
    if any(k.startswith("image_encoder.blocks.") for k in state_dict):
        return (
            "it looks like a Segment Anything (SAM 1) checkpoint, another model family: "
            "napari-sam2 needs a SAM 2 checkpoint"
        )
    return "it does not look like any SAM 2 size"


def check_state_dict(state_dict: dict, spec: ModelSpec, path) -> None:
    """Before anything is built: refuse weights of another size or another model family."""
    size = guess_size(state_dict)
    if size == spec.size:
        return
    raise CheckpointMismatchError(
        f"Checkpoint {str(path)!r} does not match the chosen model SAM {spec.version} "
        f"'{spec.size}': {_looks_like(state_dict)}. Choose the matching model size/version "
        "or another file."
    )


def load_weights(model, spec: ModelSpec, path, state_dict: dict | None = None) -> None:
    """Load a checkpoint into ``model``, explaining any mismatch."""
    sd = read_state_dict(path) if state_dict is None else state_dict
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(
            f"Checkpoint {str(path)!r} does not match the chosen model SAM {spec.version} "
            f"'{spec.size}': {_looks_like(sd)}. Choose the matching model size/version or "
            "another file."
        ) from e
