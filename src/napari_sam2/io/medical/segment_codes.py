"""Names and codes of the segments of a DICOM SEG: one :class:`SegmentSpec` per label ID.

A DICOM SEG describes each segment by a label (free text), a *segmented property
category* and a *segmented property type*, both coded concepts (SNOMED CT codes from
DICOM's code lists, as in ``pydicom.sr.codedict.codes.SCT``). napari-sam2 takes them
from a mapping ``{label ID: spec}`` where a spec is

* a name: ``"Liver"`` — the type is the SCT code of that name when DICOM knows one
  (``Liver`` → SCT 10200004), else *Tissue*; the category is *Tissue*;
* a dict ``{"label": ..., "category": ..., "type": ...}`` where a code is a known SCT
  keyword or meaning (``"Neoplasm"``, ``"Anatomical Structure"``) or an explicit
  ``"SCHEME:VALUE:Meaning"`` triple (``"SCT:108369006:Neoplasm"``);
* a :class:`SegmentSpec`.

The same mapping is read from a JSON file (``{"1": "Liver", "2": {"label": "Tumour",
"type": "Neoplasm"}}``) or a CSV file with the columns ``id,label[,category][,type]``
(:func:`read_segment_file`), which is what ``napari-sam2 segment --segments FILE``
takes.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "SegmentSpec",
    "SegmentSpecError",
    "code_of",
    "default_label",
    "label_id_of",
    "parse_segments",
    "read_segment_file",
]

_DEFAULT_LABEL = re.compile(r"^label (\d+)$")
_TRACKING = re.compile(r"^napari-sam2 label (\d+)$")


class SegmentSpecError(ValueError):
    """A segment name/code mapping that cannot be used (unknown code, bad file, bad ID)."""


@dataclass(frozen=True)
class SegmentSpec:
    """How one label ID is described in a DICOM SEG: label text and two coded concepts,
    each a ``(scheme, value, meaning)`` triple."""

    label: str
    category: tuple[str, str, str] = ("SCT", "85756007", "Tissue")
    type: tuple[str, str, str] = ("SCT", "85756007", "Tissue")

    def as_dict(self) -> dict[str, str]:
        """Plain JSON-able form (as kept in a Labels layer's metadata)."""
        return {
            "label": self.label,
            "category": ":".join(self.category),
            "type": ":".join(self.type),
        }


def default_label(label_id: int) -> str:
    """The segment label written for an ID without a name (``"label 7"``)."""
    return f"label {int(label_id)}"


def tracking_id(label_id: int) -> str:
    """The TrackingID that carries the napari label ID through a DICOM SEG."""
    return f"napari-sam2 label {int(label_id)}"


def label_id_of(segment_label: str, tracking: str | None, segment_number: int) -> int:
    """The napari label ID of a SEG segment: from our TrackingID, else from a
    ``"label <ID>"`` segment label, else the segment number."""
    for text, pattern in ((tracking, _TRACKING), (segment_label, _DEFAULT_LABEL)):
        match = pattern.match(str(text or "").strip())
        if match:
            return int(match.group(1))
    return int(segment_number)


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def code_of(value: Any) -> tuple[str, str, str]:
    """``(scheme, value, meaning)`` of a code given as a triple, a pydicom/highdicom code,
    ``"SCHEME:VALUE:Meaning"`` or a SNOMED CT keyword/meaning known to DICOM.

    Raises
    ------
    SegmentSpecError
        The name is not a SNOMED CT concept in DICOM's code lists.
    """
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return tuple(str(v) for v in value)  # type: ignore[return-value]
    if hasattr(value, "scheme_designator") and hasattr(value, "value"):
        return (str(value.scheme_designator), str(value.value), str(value.meaning))
    text = str(value or "").strip()
    if text.count(":") >= 2:
        scheme, code, meaning = text.split(":", 2)
        if scheme and code and meaning:
            return (scheme.strip(), code.strip(), meaning.strip())
    found = _sct_lookup(text)
    if found is None:
        raise SegmentSpecError(
            f"'{text}' is not a SNOMED CT concept known to DICOM: give a known name "
            "(e.g. 'Liver', 'Neoplasm', 'Cell') or an explicit 'SCT:<code>:<meaning>'"
        )
    return found


# names the DICOM standard's context groups use (CID 7150 segmentation categories) for
# concepts that pydicom's code dictionary holds under their SNOMED CT name
_DICOM_NAMES = MappingProxyType(
    {"morphologicallyalteredstructure": "Morphologically Abnormal Structure"}
)


def _sct_lookup(text: str) -> tuple[str, str, str] | None:
    from pydicom.sr.codedict import codes

    key = _normalised(text)
    if not key:
        return None
    text = _DICOM_NAMES.get(key, text)  # DICOM's name for a concept pydicom names otherwise
    key = _normalised(text)
    for keyword in codes.SCT.dir(text.split()[0][:4] if text.split() else text):
        code = getattr(codes.SCT, keyword)
        if _normalised(keyword) == key or _normalised(code.meaning) == key:
            return ("SCT", str(code.value), str(code.meaning))
    return None


def _spec(label_id: int, value: Any) -> SegmentSpec:
    if isinstance(value, SegmentSpec):
        return value
    if isinstance(value, str):
        name = value.strip() or default_label(label_id)
        kind = _sct_lookup(name)
        return SegmentSpec(name, type=kind) if kind else SegmentSpec(name)
    if isinstance(value, Mapping):
        name = str(value.get("label") or value.get("name") or "").strip()
        name = name or default_label(label_id)
        kind = value.get("type")
        spec = _spec(label_id, name)
        return SegmentSpec(
            name,
            category=code_of(value["category"]) if value.get("category") else spec.category,
            type=code_of(kind) if kind else spec.type,
        )
    raise SegmentSpecError(f"label {label_id}: a segment is a name or a mapping, not {value!r}")


def parse_segments(segments: Mapping[Any, Any] | None) -> dict[int, SegmentSpec]:
    """``{label ID: SegmentSpec}`` from a user mapping (keys may be strings of integers).

    Raises
    ------
    SegmentSpecError
        A key is not a positive integer, or a code is unknown.
    """
    out: dict[int, SegmentSpec] = {}
    for key, value in (segments or {}).items():
        try:
            label_id = int(str(key).strip())
        except ValueError:
            raise SegmentSpecError(f"segment key {key!r} is not a label ID") from None
        if label_id <= 0:
            raise SegmentSpecError(f"segment key {label_id}: label IDs start at 1")
        out[label_id] = _spec(label_id, value)
    return out


def read_segment_file(path: str | os.PathLike) -> dict[int, SegmentSpec]:
    """Read a JSON (``{"1": "Liver", ...}``) or CSV (``id,label[,category][,type]``)
    segment mapping.

    Raises
    ------
    FileNotFoundError
        No such file.
    SegmentSpecError
        Unreadable content or an unknown code (the message names the file).
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no such segment file: {path}")
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            if not isinstance(raw, Mapping):
                raise SegmentSpecError("a JSON object {ID: name or {label, category, type}}")
        else:
            rows = list(csv.DictReader(text.splitlines()))
            if not rows or "id" not in rows[0] or "label" not in rows[0]:
                raise SegmentSpecError("a CSV with the columns id,label[,category][,type]")
            raw = {row["id"]: {k: v for k, v in row.items() if k != "id" and v} for row in rows}
        return parse_segments(raw)
    except (json.JSONDecodeError, SegmentSpecError) as exc:
        raise SegmentSpecError(f"{path.name}: {exc}") from exc
