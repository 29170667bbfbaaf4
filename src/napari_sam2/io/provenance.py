"""Provenance records: how a labels image was made, as plain JSON.

A provenance record is a JSON-serialisable ``dict`` that travels with a Labels
layer as ``layer.metadata["napari_sam2"]`` and is stored inside the labels TIFF
written by :mod:`napari_sam2.io.tiff.writer`. The widget and the engine fill it; this
module only builds, normalises, serialises and validates it.

Recommended keys (all optional except the ones :func:`make_provenance` adds):

``schema``
    ``"napari-sam2/provenance/1"`` (added automatically).
``plugin_version``, ``created``, ``tifffile_version``, ``numpy_version``
    Added automatically by :func:`make_provenance`.
``backend``, ``model_size``, ``checkpoint_sha256``, ``device``
    What produced the masks, e.g. ``"sam2-image"``, ``"small"``, a hex digest,
    ``"cuda:0"``.
``normalisation``
    How image intensities were mapped for the model, e.g.
    ``{"method": "contrast_limits", "limits": [100, 2000]}``.
``objects``
    Per-object prompts keyed by the integer label ID, e.g.
    ``{1: {"points": [[10, 20]], "point_labels": [1], "plane": [4]}}``.
    JSON object keys are strings; :func:`provenance_from_json` turns the keys of
    ``objects`` back into ``int`` so that a record survives a round trip unchanged.
    The widget also stores ``"commit": k`` in each prompt entry.
``commits``
    One entry per commit made in the widget (its model facts, normalisation, image
    layers, plane, ``ids`` written and ``created`` time), so that a later commit with
    another model or window never rewrites what an earlier object was made with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = [
    "PROVENANCE_SCHEMA",
    "ProvenanceError",
    "make_provenance",
    "normalise_provenance",
    "plugin_version",
    "provenance_from_json",
    "provenance_to_json",
]

PROVENANCE_SCHEMA = "napari-sam2/provenance/1"
"""Schema identifier stored in every record made by :func:`make_provenance`."""

_SCHEMA_PREFIX = "napari-sam2/provenance/"
_OBJECTS_KEY = "objects"


class ProvenanceError(ValueError):
    """A provenance record is not a valid JSON object of the expected form."""


def plugin_version() -> str:
    """Return the installed napari-sam2 version.

    Returns
    -------
    str
        ``napari_sam2.__version__`` (the ``_version`` module setuptools-scm writes),
        else the distribution version of ``napari-sam2``, else ``"unknown"``.
    """
    try:  # the leaf module setuptools-scm writes (what napari_sam2.__version__ reads)
        from .._version import version as scm_version

        return str(scm_version)
    except ImportError:  # running from a source tree that was never installed
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-sam2")
    except PackageNotFoundError:
        return "unknown"


def _to_jsonable(value: Any, where: str) -> Any:
    """Convert ``value`` to plain JSON types, or raise :class:`ProvenanceError`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise ProvenanceError(f"provenance value at {where} is not finite: {value}")
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.ndarray):
        return _to_jsonable(value.tolist(), where)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (str, int, np.integer)):
                raise ProvenanceError(
                    f"provenance key {key!r} at {where} must be a str or int, "
                    f"not {type(key).__name__}"
                )
            out[str(key) if not isinstance(key, str) else key] = _to_jsonable(
                item, f"{where}.{key}"
            )
        return out
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ProvenanceError(
        f"provenance value at {where} of type {type(value).__name__} is not JSON-serialisable"
    )


def _restore_object_ids(record: dict) -> dict:
    """Turn the string keys of ``record['objects']`` back into int label IDs."""
    objects = record.get(_OBJECTS_KEY)
    if not isinstance(objects, dict):
        return record
    restored = {}
    for key, item in objects.items():
        try:
            label_id = int(key)
        except (TypeError, ValueError) as exc:
            raise ProvenanceError(
                f"provenance 'objects' must be keyed by integer label IDs, got {key!r}"
            ) from exc
        if label_id <= 0:
            raise ProvenanceError(f"provenance 'objects' has a non-positive label ID {label_id}")
        restored[label_id] = item
    return {**record, _OBJECTS_KEY: restored}


def _validate(record: Any) -> dict:
    """Check the top-level form of a decoded record and return it."""
    if not isinstance(record, dict):
        raise ProvenanceError(
            f"provenance must be a JSON object (dict), not {type(record).__name__}"
        )
    schema = record.get("schema")
    if schema is not None and (
        not isinstance(schema, str) or not schema.startswith(_SCHEMA_PREFIX)
    ):
        raise ProvenanceError(f"unknown provenance schema {schema!r}")
    objects = record.get(_OBJECTS_KEY)
    if objects is not None and not isinstance(objects, dict):
        raise ProvenanceError(
            f"provenance 'objects' must map label IDs to prompts, not {type(objects).__name__}"
        )
    return record


def normalise_provenance(record: Mapping[str, Any]) -> dict:
    """Return ``record`` as it will look after a JSON round trip.

    Numpy scalars and arrays become Python numbers and lists, tuples become
    lists, paths become strings, and the keys of ``objects`` become ``int``.

    Parameters
    ----------
    record : Mapping
        A provenance record.

    Returns
    -------
    dict
        A new, validated record made only of JSON types (plus int object IDs).

    Raises
    ------
    ProvenanceError
        If the record is not a mapping or holds values JSON cannot represent
        (objects, NaN, infinity, non-string keys).
    """
    return provenance_from_json(provenance_to_json(record))


def make_provenance(**fields: Any) -> dict:
    """Build a provenance record with the environment filled in.

    Parameters
    ----------
    **fields
        Anything describing how the labels were made (see the module docstring
        for the recommended keys). Fields given here override the automatic ones.

    Returns
    -------
    dict
        A normalised record with ``schema``, ``plugin_version``, ``created``
        (UTC ISO 8601 timestamp), ``tifffile_version`` and ``numpy_version``
        plus ``fields``.

    Examples
    --------
    >>> prov = make_provenance(backend="classical", objects={1: {"points": [[3, 4]]}})
    >>> prov["objects"][1]["points"]
    [[3, 4]]
    """
    try:
        import tifffile

        tifffile_version = tifffile.__version__
    except ImportError:  # pragma: no cover - tifffile is a dependency
        tifffile_version = None
    base = {
        "schema": PROVENANCE_SCHEMA,
        "plugin_version": plugin_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tifffile_version": tifffile_version,
        "numpy_version": np.__version__,
    }
    base.update(fields)
    return normalise_provenance(base)


def provenance_to_json(record: Mapping[str, Any], *, indent: int | None = None) -> str:
    """Serialise a provenance record to a JSON string.

    Parameters
    ----------
    record : Mapping
        The provenance record.
    indent : int, optional
        Passed to :func:`json.dumps` for a human-readable layout.

    Returns
    -------
    str
        ASCII-only JSON (non-ASCII characters are escaped), so that it fits in
        any TIFF ASCII field.

    Raises
    ------
    ProvenanceError
        If ``record`` is not a mapping or is not JSON-serialisable.
    """
    if not isinstance(record, Mapping):
        raise ProvenanceError(f"provenance must be a mapping (dict), not {type(record).__name__}")
    plain = _validate(_to_jsonable(record, "provenance"))
    return json.dumps(plain, ensure_ascii=True, allow_nan=False, indent=indent, sort_keys=True)


def provenance_from_json(text: str | bytes) -> dict:
    """Parse and validate a provenance record written by :func:`provenance_to_json`.

    Parameters
    ----------
    text : str or bytes
        JSON text of one object.

    Returns
    -------
    dict
        The record, with the keys of ``objects`` turned back into ``int``.

    Raises
    ------
    ProvenanceError
        If the text is not JSON, not a JSON object, has an unknown ``schema``,
        or ``objects`` is not keyed by positive integer label IDs.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ProvenanceError(f"provenance JSON must be str or bytes, not {type(text).__name__}")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProvenanceError(f"provenance is not valid JSON: {exc}") from exc
    return _restore_object_ids(_validate(record))
