"""Private: decoding DICOM pixel data, with messages that name what to install."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DicomReadError

__all__ = ["decoder_problem", "pixels"]


def decoder_problem(ds) -> str | None:
    """None when pydicom can decode the pixel data, else a message naming what to install."""
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return None
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"pydicom has no decoder at all for the transfer syntax {syntax.name}"
    if decoder.is_available:
        return None
    options = "; or ".join(decoder.missing_dependencies) or "a pydicom pixel data plugin"
    return (
        f"the pixel data are compressed as {syntax.name}, and no decoder for it is "
        f"installed. Install one into napari's Python environment: {options} "
        "(for example `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`)"
    )


def _other_decoders(ds) -> str:
    """A hint naming the decoders not installed for this transfer syntax (an installed one
    can fail on a variant it does not support, e.g. Pillow on 12-bit JPEG)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return ""
    from pydicom.pixels import get_decoder

    try:
        missing = get_decoder(syntax).missing_dependencies
    except (NotImplementedError, AttributeError):
        return ""
    if not missing:
        return ""
    return (
        f". Another decoder for {syntax.name} may read it; install one into napari's "
        f"Python environment: {'; or '.join(missing)}"
    )


def pixels(ds: Any) -> np.ndarray:
    """Decoded pixel data (palette colour → RGB), or DicomReadError."""
    problem = decoder_problem(ds)
    if problem:
        raise DicomReadError(problem)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise DicomReadError(f"cannot decode the pixel data: {exc}{_other_decoders(ds)}") from exc
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    return arr
