"""Layer helpers: engine input from an Image layer, matching prompt/labels layers, undoable writes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..engine.errors import ImageError, LabelsError
from ..engine.labels import LabelEdit
from .coords import full_resolution, slices_obliquely

POSITIVE = "positive"  # Points feature column: True = positive click
POINT_COLORS = {True: "#39ff14", False: "#ff2d55"}
CHANNEL_LABELS = ("c", "ch", "channel", "channels")


def channel_axis_of(image_layer) -> int | None:
    """An axis the layer itself labels as channels (napari splits channel_axis into layers)."""
    if getattr(image_layer, "rgb", False):
        return None
    labels = [str(a).lower() for a in getattr(image_layer, "axis_labels", ())]
    for i, a in enumerate(labels[: image_layer.ndim - 2]):
        if a in CHANNEL_LABELS:
            return i
    return None


def plane_geometry(image_layer) -> dict:
    """Geometry of the image's last two (spatial) axes: for 2-D layers shown on any plane."""
    return _geometry(image_layer, keep=[image_layer.ndim - 2, image_layer.ndim - 1])


def spatial_shape(image_layer) -> tuple[int, ...]:
    """Shape a Labels layer for this image must have (no RGB axis, no channel axis)."""
    shape = list(full_resolution(image_layer).shape[: image_layer.ndim])
    ch = channel_axis_of(image_layer)
    if ch is not None:
        del shape[ch]
    return tuple(int(s) for s in shape)


def _geometry(image_layer, drop: int | None = None, keep: Sequence[int] | None = None) -> dict:
    """Transform keywords copying the image layer's geometry (minus one axis, or only the
    ``keep`` axes); shear is copied only when all axes are kept."""
    nd = image_layer.ndim
    keep = [i for i in range(nd) if i != drop] if keep is None else list(keep)
    if len(keep) < nd:
        drop = -1  # a subset of axes: no shear
    geo = {
        "scale": np.asarray(image_layer.scale)[keep],
        "translate": np.asarray(image_layer.translate)[keep],
        "rotate": np.asarray(image_layer.rotate)[np.ix_(keep, keep)],
        "shear": None,
        "affine": np.asarray(image_layer.affine.affine_matrix)[np.ix_(keep + [nd], keep + [nd])],
        "axis_labels": tuple(np.asarray(image_layer.axis_labels)[keep]),
        "units": tuple(np.asarray([str(u) for u in image_layer.units])[keep]),
    }
    shear = np.asarray(image_layer.shear)
    if shear.size and np.any(shear) and drop is None:
        geo["shear"] = shear
    if geo["shear"] is None:
        del geo["shear"]
    return geo


def check_channel_axis_first(image_layer) -> None:
    """Raise :class:`ImageError` when the layer's channel axis is not its first axis.

    napari lines layers up on their *last* axes, so a prompt or labels layer (no channel
    axis) can only line up with the image when the channel axis comes first.
    """
    ch = channel_axis_of(image_layer)
    if ch not in (None, 0):
        raise ImageError(
            f"The channel axis of '{image_layer.name}' is axis {ch}, not the first one: "
            "napari cannot line a labels layer up with it.  Split the channels into layers "
            "(right-click the layer > Split Stack) or open the file with the napari-sam2 "
            "reader, which does that."
        )


def _matching_geometry(image_layer) -> dict:
    """Geometry for prompt/labels layers of ``image_layer`` (its channel axis dropped)."""
    check_channel_axis_first(image_layer)
    return _geometry(image_layer, channel_axis_of(image_layer))


def new_points_layer(viewer, image_layer, name: str | None = None):
    """A Points layer for prompts: same geometry as the image, `positive` feature coloured."""
    geo = _matching_geometry(image_layer)
    nd = len(geo["scale"])
    return viewer.add_points(
        np.empty((0, nd)),
        ndim=nd,
        name=name or f"{image_layer.name} prompts",
        features={POSITIVE: np.zeros(0, bool)},
        feature_defaults={POSITIVE: True},
        face_color=POSITIVE,
        face_color_cycle=POINT_COLORS,
        border_color="white",
        size=float(np.clip(min(spatial_shape(image_layer)[-2:]) / 80, 3.0, 40.0)),
        **geo,
    )


def new_shapes_layer(viewer, image_layer, name: str | None = None):
    geo = _matching_geometry(image_layer)
    return viewer.add_shapes(
        ndim=len(geo["scale"]),
        name=name or f"{image_layer.name} boxes",
        edge_color="#ffd60a",
        face_color="transparent",
        edge_width=float(np.clip(min(spatial_shape(image_layer)[-2:]) / 300, 1.0, 10.0)),
        **geo,
    )


def new_labels_layer(viewer, image_layer, name: str | None = None, dtype=np.uint16):
    """A zero Labels layer matching the image's spatial shape and geometry.

    uint16 by default: napari draws uint8/uint16 labels directly, while wider types are
    re-coloured on the CPU at every refresh (~80 ms per 2048² plane).  The layer is widened
    to uint32 by :func:`ensure_fits` if an ID ever exceeds 65535.
    """
    geo = _matching_geometry(image_layer)
    return viewer.add_labels(
        np.zeros(spatial_shape(image_layer), dtype=dtype),
        name=name or f"{image_layer.name} labels",
        **geo,
    )


TRANSFORM_KEYS = ("scale", "translate", "rotate", "shear", "affine")  # the order set


def layer_geometry(image_layer) -> dict | None:
    """The transform our prompt/labels layers of ``image_layer`` get (None: no such layers
    can be made, e.g. a channel axis that is not first)."""
    try:
        geo = _matching_geometry(image_layer)
    except ImageError:
        return None
    return {k: geo[k] for k in TRANSFORM_KEYS if k in geo}


def same_transform(layer, geo: dict | None) -> bool:
    """Has ``layer`` the transform ``geo`` (from :func:`layer_geometry`)?"""
    if geo is None or layer.ndim != len(geo["scale"]):
        return False
    pairs = (
        (layer.scale, geo["scale"]),
        (layer.translate, geo["translate"]),
        (layer.rotate, geo["rotate"]),
        (layer.affine.affine_matrix, geo["affine"]),
    )
    return all(np.allclose(np.asarray(a, float), np.asarray(b, float)) for a, b in pairs)


def realign(layer, geo: dict) -> None:
    """Give ``layer`` the transform ``geo`` (its data indices stay: for a Labels layer,
    whose pixels are image pixels, that puts them back on the image)."""
    for key in TRANSFORM_KEYS:
        if key in geo:
            setattr(layer, key, geo[key])


def geometry_matches(layer, image_layer) -> bool:
    """Does ``layer`` line up with ``image_layer`` as our prompt/labels layers would?

    Same dimensionality, scale, translate, rotation and affine as
    :func:`new_points_layer` & co. would give (the image's channel axis dropped); a
    Labels layer must also have the image's spatial shape.
    """
    if not same_transform(layer, layer_geometry(image_layer)):
        return False
    if hasattr(layer, "selected_label"):  # a Labels layer: one pixel per image pixel
        return tuple(full_resolution(layer).shape) == spatial_shape(image_layer)
    return True


def matching_layers(viewer, image_layer, layer_type, exclude=()) -> list:
    """The viewer's layers of ``layer_type`` that line up with ``image_layer`` (in order)."""
    return [
        lay
        for lay in viewer.layers
        if isinstance(lay, layer_type)
        and not any(lay is e for e in exclude)
        and geometry_matches(lay, image_layer)
    ]


def labels_matching(labels_layer, image_layer, then: str = "nothing was written") -> str | None:
    """None when the labels fit the image, else a message saying why not (``then``: what
    follows for the user, after the shape mismatch)."""
    if labels_layer is None:
        return "No Labels layer chosen: pick one or press 'New labels'."
    want = spatial_shape(image_layer)
    have = tuple(labels_layer.data.shape)
    if have != want:
        return (
            f"Labels layer '{labels_layer.name}' has shape {have} but image "
            f"'{image_layer.name}' needs {want}: {then}."
        )
    if np.dtype(labels_layer.data.dtype).kind not in "iu":  # no read of lazy data
        return f"Labels layer '{labels_layer.name}' is not an integer array."
    return None


def ensure_fits(labels_layer, max_id: int) -> bool:
    """Widen the layer's integer dtype so that ``max_id`` fits; True when it was widened.

    Widening replaces the data (one full copy, and napari starts a new undo history): it
    happens at most once, when the 65536th object of a uint16 layer is written.
    """
    dtype = np.dtype(labels_layer.data.dtype)
    if dtype.kind not in "iu" or max_id <= np.iinfo(dtype).max:
        return False
    wider = next((t for t in (np.uint32, np.uint64) if max_id <= np.iinfo(t).max), np.uint64)
    labels_layer.data = np.asarray(labels_layer.data).astype(wider)
    return True


def write_edits(labels_layer, edits: Sequence[LabelEdit]) -> list[int]:
    """Apply edits to a Labels layer as **one** undo step; returns the IDs written.

    Edits that change no pixel are dropped (their IDs are not reported).  All or nothing:
    when a write fails part-way, the pixels already written are put back before the error
    propagates, so the layer is left exactly as it was.
    """
    edits = [e for e in edits if e.size]
    if not edits:
        return []
    dtype = labels_layer.data.dtype
    for e in edits:
        if e.label_id > np.iinfo(dtype).max:
            raise LabelsError(f"Label {e.label_id} does not fit labels dtype {dtype}.")
    setitem = labels_layer.data_setitem
    if slices_obliquely(labels_layer):
        setitem = _oblique_setitem(labels_layer)
    done = []  # (indices, old values) of the edits started so far
    error = None
    with labels_layer.block_history():
        for e in edits:
            done.append((e.indices, np.asarray(labels_layer.data[e.indices]).copy()))
            try:
                setitem(e.indices, np.asarray(e.values, dtype=dtype))
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the rollback
                error = exc
                break
        if error is not None:  # put back what was written: the undo step is then a no-op
            for indices, old in reversed(done):
                setitem(indices, old)
    if error is not None:
        raise error
    if setitem is not labels_layer.data_setitem:
        labels_layer.refresh()
    return [e.label_id for e in edits]


def _oblique_setitem(labels_layer):
    """``data_setitem`` for a layer napari slices non-orthogonally: write the data and
    record the same history atom, without napari's in-place update of the shown slice.

    napari 0.9 finds the "visible" plane of such a layer with the full transform, but
    shows another one (its slicing drops the out-of-plane part), and its in-place texture
    update writes into that shown plane's pixels, which are a view of the data: a commit
    on plane 14 was copied onto plane 18.  The caller refreshes the layer once at the end.
    """

    def setitem(indices, value):
        data = labels_layer.data
        old = np.asarray(data[indices])
        value = np.broadcast_to(np.asarray(value, dtype=data.dtype), old.shape)
        changed = old != value
        if not changed.any():
            return
        idx = tuple(np.asarray(i)[changed] for i in indices)
        save_history(labels_layer, [(idx, old[changed].copy(), value[changed].copy())])
        data[idx] = value[changed]

    return setitem


# ------------------------------------------------------------ napari private API
# napari 0.9 has no public way to record an undo step for pixels written without
# ``data_setitem`` (which updates the shown slice in place: wrong for oblique layers, and
# one texture update per call for a commit written in bands), nor to ask whether a paint
# stroke is being recorded.  These two functions are the only places that use napari's
# private history API; ``tests/test_widget_commit.py`` and ``tests/test_oblique_slicing.py``
# fail when it changes.
def save_history(labels_layer, atoms) -> None:
    """Record ``atoms`` (napari's ``(indices, old values, new values)`` history atoms) in the
    layer's undo history; inside ``labels_layer.block_history()`` they form one step."""
    for atom in atoms:
        labels_layer._save_history(atom)


def painting(labels_layer) -> bool:
    """Is napari grouping history atoms right now (a paint stroke in progress)?"""
    return bool(getattr(labels_layer, "_block_history", False))
