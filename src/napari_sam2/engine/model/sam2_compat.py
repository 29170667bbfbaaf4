"""The sam2 releases this plugin supports, and a guard on the non-public sam2 API it uses.

The backend (:mod:`napari_sam2.engine.backends.sam2`) reaches into a few private
attributes of ``SAM2ImagePredictor`` (cached features, the hard-coded feature sizes, the
coordinate transforms).  A sam2 release outside the tested range, or one that renamed
those attributes, must fail at load time with one clear message, not deep in a predict.
"""

from __future__ import annotations

import re

from ..errors import Sam2VersionError

# sam2 releases this plugin supports (tested with 1.1.0; 1.0 is the GitHub install's
# version, same API); keep in step with the pin in pyproject.toml
SAM2_MIN, SAM2_BELOW = (1, 0), (1, 2)
SAM2_RANGE = "sam2>=1.0,<1.2"
# non-public parts of sam2 the backend uses (engine/backends/sam2.py)
SAM2_PREDICTOR_ATTRS = ("_bb_feat_sizes", "_transforms", "_features", "reset_predictor")
SAM2_TRANSFORM_ATTRS = ("transform_coords", "postprocess_masks")
SAM2_MODEL_ATTRS = ("image_size", "image_encoder", "sam_prompt_encoder", "sam_mask_decoder")


def sam2_version() -> str | None:
    """The installed sam2 distribution's version (None when not installed)."""
    from importlib import metadata

    try:
        return metadata.version("sam2")
    except metadata.PackageNotFoundError:
        return None


def _unsupported(version, why: str = "") -> Sam2VersionError:
    return Sam2VersionError(
        f"sam2 {version} is not supported, install {SAM2_RANGE} "
        f"(pip install '{SAM2_RANGE}')" + (f": {why}" if why else ".")
    )


def check_sam2_version(version: str | None = None) -> str:
    """Raise :class:`Sam2VersionError` unless the installed sam2 is in the tested range."""
    version = sam2_version() if version is None else version
    if version is None:
        raise Sam2VersionError(f"sam2 is not installed: install {SAM2_RANGE}.")
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None or not SAM2_MIN <= (int(m[1]), int(m[2])) < SAM2_BELOW:
        raise _unsupported(version)
    return version


def check_sam2_api(predictor, model) -> None:
    """Raise :class:`Sam2VersionError` when sam2 objects lack an attribute we rely on."""
    missing = [
        f"SAM2ImagePredictor.{a}" for a in SAM2_PREDICTOR_ATTRS if not hasattr(predictor, a)
    ]
    tr = getattr(predictor, "_transforms", None)
    if tr is not None:
        missing += [f"SAM2Transforms.{a}" for a in SAM2_TRANSFORM_ATTRS if not hasattr(tr, a)]
    missing += [f"SAM2Base.{a}" for a in SAM2_MODEL_ATTRS if not hasattr(model, a)]
    if not hasattr(getattr(getattr(model, "image_encoder", None), "trunk", None), "blocks"):
        missing.append("image_encoder.trunk.blocks")
    if missing:
        raise _unsupported(sam2_version(), "it lacks " + ", ".join(missing) + ".")
