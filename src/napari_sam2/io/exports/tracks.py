"""Time-lapse outputs of propagated labels: tracks, a per-object table, CTC export.

Plain arrays in, plain files out (no napari)::

    from napari_sam2.io.exports.tracks import object_table, tracks_array, save_table_csv, export_ctc
    rows = object_table(labels, time_axis=0, scale=(1, 0.1, 0.1))
    save_table_csv(rows, "objects.csv")
    export_ctc(labels, "01_RES")          # mask000.tif ... + res_track.txt

A track is one label ID over time (track ID = label ID).  A label missing on some frames
stays one track with a gap, as in the Cell Tracking Challenge's own ground truth; with
``split_gaps=True`` it becomes several tracks (new IDs, the earlier part as parent), for
tools that want continuous tracks.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

__all__ = ["ctc_tracks", "export_ctc", "object_table", "save_table_csv", "tracks_array"]

TABLE_COLUMNS = ("frame", "label_id", "area_px", "area", "centroid_data", "centroid_world")


def _frames(labels, time_axis: int):
    n = labels.shape[time_axis]
    for t in range(n):
        yield t, np.asarray(np.take(labels, t, axis=time_axis))


def object_table(labels, *, time_axis: int = 0, scale=None, translate=None) -> list[dict]:
    """One row per (frame, label): area in pixels and physical units, centroids.

    ``scale``/``translate`` are the layer's per-axis values (all axes, time included);
    ``centroid_data`` is in pixels of the frame's axes (e.g. (z,) y, x), ``centroid_world``
    is ``centroid_data * scale + translate`` on those axes, and ``area`` is the pixel
    count times the product of their scales (a volume for 3-D frames).
    """
    nd = labels.ndim
    space = [a for a in range(nd) if a != time_axis]
    sc = np.ones(nd) if scale is None else np.asarray(scale, float)
    tr = np.zeros(nd) if translate is None else np.asarray(translate, float)
    px = float(np.prod(sc[space]))
    rows = []
    for t, frame in _frames(labels, time_axis):
        ids = np.unique(frame)
        ids = ids[ids > 0]
        if not ids.size:
            continue
        areas = ndi.sum_labels(np.ones(frame.shape), frame, ids)
        cents = ndi.center_of_mass(np.ones(frame.shape), frame, ids)
        for lid, a, c in zip(ids, areas, cents, strict=True):
            c = np.asarray(c, float)
            rows.append(
                {
                    "frame": t,
                    "label_id": int(lid),
                    "area_px": int(a),
                    "area": float(a) * px,
                    "centroid_data": tuple(float(v) for v in c),
                    "centroid_world": tuple(float(v) for v in c * sc[space] + tr[space]),
                }
            )
    return rows


def tracks_array(rows: list[dict]) -> np.ndarray:
    """napari Tracks data ``(N, 2 + D)``: track ID (= label ID), frame, centroid (data px).

    Sorted by track then frame, as napari wants.  Give the Tracks layer the labels layer's
    scale and translate and it lines up with the image in world coordinates.
    """
    if not rows:
        return np.empty((0, 4))
    data = [[r["label_id"], r["frame"], *r["centroid_data"]] for r in rows]
    arr = np.asarray(data, float)
    return arr[np.lexsort((arr[:, 1], arr[:, 0]))]


def save_table_csv(rows: list[dict], path) -> Path:
    """Write :func:`object_table` rows as CSV (one column per centroid coordinate)."""
    path = Path(path)
    d = len(rows[0]["centroid_data"]) if rows else 2
    names = ["z", "y", "x"][-d:] if d <= 3 else [f"ax{i}" for i in range(d)]
    header = ["frame", "label_id", "area_px", "area"]
    header += [f"{n}_px" for n in names] + [f"{n}_world" for n in names]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(
                [r["frame"], r["label_id"], r["area_px"], f"{r['area']:.6g}"]
                + [f"{v:.4f}" for v in r["centroid_data"]]
                + [f"{v:.6g}" for v in r["centroid_world"]]
            )
    return path


def ctc_tracks(
    labels, *, time_axis: int = 0, parents: dict | None = None, split_gaps: bool = False
):
    """CTC tracks ``[(L, B, E, P)]`` and the relabelled frames.

    Returns ``(tracks, relabel)`` where ``relabel[(t, label)]`` is the CTC ID of ``label``
    on frame ``t`` (the label itself unless its track was split at a gap).
    """
    present: dict[int, list[int]] = {}
    for t, frame in _frames(labels, time_axis):
        for lid in np.unique(frame):
            if lid > 0:
                present.setdefault(int(lid), []).append(t)
    next_id = max(present, default=0) + 1
    parents = dict(parents or {})
    tracks, relabel = [], {}
    for lid in sorted(present):
        frames = present[lid]
        runs = [np.asarray(frames)]
        if split_gaps:
            runs = np.split(runs[0], np.flatnonzero(np.diff(frames) > 1) + 1)
        prev = int(parents.get(lid, 0))
        for k, run in enumerate(runs):
            tid = lid if k == 0 else next_id
            if k:
                next_id += 1
            tracks.append((tid, int(run[0]), int(run[-1]), prev))
            for t in run:
                relabel[(int(t), lid)] = tid
            prev = tid
    return sorted(tracks), relabel


def export_ctc(
    labels,
    out_dir,
    *,
    time_axis: int = 0,
    parents: dict | None = None,
    split_gaps: bool = False,
) -> Path:
    """Write ``maskTTT.tif`` per frame (uint16) and ``res_track.txt`` (``L B E P``).

    ``parents``: label → parent label (divisions), 0 when unknown (propagation makes no
    divisions).
    """
    import tifffile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracks, relabel = ctc_tracks(
        labels, time_axis=time_axis, parents=parents, split_gaps=split_gaps
    )
    if tracks and max(t[0] for t in tracks) > np.iinfo(np.uint16).max:
        raise ValueError("CTC masks are uint16: more than 65535 tracks cannot be written.")
    n = labels.shape[time_axis]
    digits = max(3, len(str(n - 1)))
    for t, frame in _frames(labels, time_axis):
        mask = np.asarray(frame, np.uint16).copy()
        for (ft, lid), tid in relabel.items():
            if ft == t and tid != lid:
                mask[frame == lid] = tid
        tifffile.imwrite(out / f"mask{t:0{digits}d}.tif", mask, compression=None)
    with open(out / "res_track.txt", "w", encoding="utf-8") as f:
        for tr in tracks:
            f.write(" ".join(str(v) for v in tr) + "\n")
    return out
