"""Private helpers shared by the reader and the writer: axes, units, our TIFF record.

The *labels record* is a small JSON object that :mod:`napari_sam2.io.tiff.writer`
stores in every labels TIFF it writes::

    {"napari_sam2_labels": 1, "axes": "ZYX", "scale": [...], "units": [...],
     "translate": [...], "name": "...", "provenance": {...} | null}

It lives in the ImageJ ``Info`` property (``.tif``), in an OME
``CommentAnnotation`` with namespace :data:`OME_NAMESPACE` (``.ome.tif``), or in
tifffile's shaped JSON description (plain TIFF, used for uint32 labels).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

RECORD_KEY = "napari_sam2_labels"
RECORD_VERSION = 1
OME_NAMESPACE = "napari-sam2/labels"

COMMON_DPI = {72.0, 96.0, 150.0, 300.0, 600.0}

# Letters napari_sam2 understands, in the canonical ImageJ/OME order.
CANONICAL_ORDER = "TZCYXS"

_UNIT_ALIASES = {
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometer": "micrometer",
    "micrometre": "micrometer",
    "nm": "nanometer",
    "nanometer": "nanometer",
    "nanometre": "nanometer",
    "mm": "millimeter",
    "millimeter": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "meter": "meter",
    "pixel": "pixel",
    "pixels": "pixel",
    "px": "pixel",
    "s": "second",
    "sec": "second",
    "second": "second",
    "seconds": "second",
    "ms": "millisecond",
    "millisecond": "millisecond",
    "min": "minute",
    "minute": "minute",
    "h": "hour",
    "hour": "hour",
}

_IMAGEJ_UNITS = {
    "second": "sec",
    "micrometer": "um",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
}
_OME_UNITS = {
    "micrometer": "µm",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "second": "s",
    "millisecond": "ms",
    "minute": "min",
    "hour": "h",
}

_AXIS_NAMES = {
    "t": "T",
    "time": "T",
    "frame": "T",
    "frames": "T",
    "z": "Z",
    "depth": "Z",
    "slice": "Z",
    "c": "C",
    "channel": "C",
    "y": "Y",
    "row": "Y",
    "x": "X",
    "col": "X",
    "column": "X",
    "s": "S",
}


def normalise_unit(unit: Any) -> str | None:
    """Map a unit (string or pint unit) to a pint-parsable name, or None if unknown."""
    if unit is None:
        return None
    text = str(unit).strip()
    if not text:
        return None
    return _UNIT_ALIASES.get(text.lower(), _UNIT_ALIASES.get(text, text))


def imagej_unit(unit: str | None) -> str | None:
    """Unit string for ImageJ metadata (``um`` rather than ``micrometer``)."""
    name = normalise_unit(unit)
    return _IMAGEJ_UNITS.get(name, name) if name else None


def ome_unit(unit: str | None) -> str | None:
    """Unit symbol for OME-XML (``µm``), or None when OME has no such symbol."""
    name = normalise_unit(unit)
    return _OME_UNITS.get(name) if name else None


def axes_from_labels(axis_labels: Any, ndim: int) -> str:
    """Turn napari axis labels into TIFF axis letters (``"ZYX"``).

    Unrecognised labels (napari's defaults are ``"-3", "-2", "-1"``) fall back to
    the last ``ndim`` letters of ``"TZYX"`` (so 3D data is read as ZYX).
    """
    if axis_labels is not None and len(axis_labels) == ndim:
        letters = [_AXIS_NAMES.get(str(lab).strip().lower()) for lab in axis_labels]
        if all(letters) and len(set(letters)) == ndim and "C" not in letters:
            return "".join(letters)
    if ndim > 4:
        raise ValueError(
            f"cannot infer TIFF axes for {ndim}D labels without axis labels "
            "(expected at most T, Z, Y, X)"
        )
    return "TZYX"[-ndim:]


def is_canonical(axes: str) -> bool:
    """True when ``axes`` follows the ImageJ/OME order T, Z, C, Y, X, S."""
    positions = [CANONICAL_ORDER.find(a) for a in axes]
    return -1 not in positions and positions == sorted(positions)


def make_record(
    axes: str,
    scale: list[float],
    units: list[str],
    translate: list[float],
    name: str | None,
    provenance: dict | None,
) -> dict:
    """Assemble the labels record (the provenance must already be normalised)."""
    return {
        RECORD_KEY: RECORD_VERSION,
        "axes": axes,
        "scale": [float(s) for s in scale],
        "units": list(units),
        "translate": [float(t) for t in translate],
        "name": name,
        "provenance": provenance,
    }


def record_to_text(record: dict) -> str:
    """ASCII-only JSON of the record."""
    return json.dumps(record, ensure_ascii=True, allow_nan=False, sort_keys=True)


def record_from_text(text: Any) -> dict | None:
    """Find our labels record in free text (an ImageJ Info block, an annotation).

    Returns None when the text holds no record; the record itself is returned
    undecoded below its top level (provenance is validated by the caller).
    """
    if not isinstance(text, str) or RECORD_KEY not in text:
        return None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and RECORD_KEY in obj:
            return obj
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_pixels(pixels: ET.Element) -> dict:
    sizes: dict[str, tuple[float, str]] = {}
    attrs = pixels.attrib
    for axis, key, unit_key, default in (
        ("X", "PhysicalSizeX", "PhysicalSizeXUnit", "µm"),
        ("Y", "PhysicalSizeY", "PhysicalSizeYUnit", "µm"),
        ("Z", "PhysicalSizeZ", "PhysicalSizeZUnit", "µm"),
        ("T", "TimeIncrement", "TimeIncrementUnit", "s"),
    ):
        if key in attrs:
            try:
                value = float(attrs[key])
            except ValueError:
                continue
            if value > 0:
                sizes[axis] = (value, attrs.get(unit_key, default))
    channels, colors = [], []
    for channel in pixels:
        if _local(channel.tag) == "Channel":
            channels.append(channel.attrib.get("Name"))
            color = channel.attrib.get("Color")
            colors.append(int(color) if color not in (None, "") else None)
    try:
        size_yx = (int(attrs["SizeY"]), int(attrs["SizeX"]))
    except (KeyError, ValueError):
        size_yx = None
    return {"sizes": sizes, "channels": channels, "colors": colors, "size_yx": size_yx}


def parse_ome(
    xml: str, image: int = 0, *, name: str | None = None, size_yx: tuple | None = None
) -> dict:
    """Extract what the reader needs from OME-XML for one image (the first by default).

    ``image`` is the index of the OME ``Image`` (tifffile's series index). When
    ``size_yx`` is given and that image's ``SizeY``/``SizeX`` differ (tifffile skips
    images it cannot read, so indices can shift), the first image with that size,
    preferring one called ``name``, is used; if none matches, no sizes or channels
    are returned rather than another image's.

    Returns a dict with ``sizes`` ({axis: (size, unit)}), ``channels`` (names),
    ``colors`` (OME int colours or None), ``name`` (the image name) and ``record``
    (our labels record or None).
    """
    out: dict[str, Any] = {
        "sizes": {},
        "channels": [],
        "colors": [],
        "name": None,
        "record": None,
    }
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return out
    images: list[tuple[str | None, dict]] = []
    for element in root.iter():
        tag = _local(element.tag)
        if tag == "Image":
            pixels = next((c for c in element if _local(c.tag) == "Pixels"), None)
            if pixels is not None:
                images.append((element.attrib.get("Name"), _parse_pixels(pixels)))
        elif tag == "CommentAnnotation" and element.attrib.get("Namespace") == OME_NAMESPACE:
            for child in element:
                if _local(child.tag) == "Value" and out["record"] is None:
                    out["record"] = record_from_text(child.text or "")
    chosen = images[image] if 0 <= image < len(images) else None
    if size_yx is not None and (chosen is None or chosen[1]["size_yx"] != tuple(size_yx)):
        same_size = [im for im in images if im[1]["size_yx"] == tuple(size_yx)]
        named = [im for im in same_size if name and im[0] == name]
        chosen = (named or same_size or [None])[0]
    if chosen is not None:
        out["name"] = chosen[0]
        out.update({k: chosen[1][k] for k in ("sizes", "channels", "colors")})
    return out


def pixel_size_imagej(ij: dict, page: Any) -> dict:
    """Pixel sizes ``{axis: (size, unit)}`` from ImageJ metadata and resolution tags."""
    unit = normalise_unit(ij.get("unit")) or "pixel"
    sizes: dict[str, tuple[float, str]] = {}
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in page.tags:
            num, den = page.tags[tag].value
            if num > 0 and den > 0 and (num, den) != (1, 1):
                sizes[axis] = (den / num, unit)
    spacing = ij.get("spacing")
    if spacing:
        sizes["Z"] = (float(spacing), unit)
    finterval = ij.get("finterval")
    if finterval:
        sizes["T"] = (float(finterval), normalise_unit(ij.get("tunit")) or "second")
    return sizes


def pixel_size_plain(page: Any) -> dict:
    """Pixel sizes from resolution tags in inch/cm units (screen DPI values ignored)."""
    if "XResolution" not in page.tags or "ResolutionUnit" not in page.tags:
        return {}
    per_unit = {2: 25400.0, 3: 10000.0}.get(int(page.tags["ResolutionUnit"].value))
    if per_unit is None:
        return {}
    sizes = {}
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in page.tags:
            num, den = page.tags[tag].value
            if num > 0 and den > 0:
                res = num / den
                if per_unit == 25400.0 and res in COMMON_DPI:
                    return {}  # a screen/printer DPI, not a pixel size
                sizes[axis] = (per_unit / res, "micrometer")
    return sizes
