"""The files of the plane ranges of a split stack, kept across runs (resuming).

A range is two hidden files next to the output: ``.<output>.partial-range-0002of0005.npy``
(its labels, ``(planes, H, W)`` int32) and ``….json`` (its *record*).  Each is written
under a temporary name and renamed, the record last: a range is complete only when its
record exists, is ours, and matches

- the input: its resolved path, size and modification time (a folder: those of every
  file in it),
- the job's fingerprint (prompts, settings, model options: as for skipping outputs),
- the range: its index, the number of ranges and its planes,
- the labels file: its shape, dtype and a digest of its data.

Before a split file runs, :func:`prepare` keeps the complete ranges of the plan (they are
not segmented again) and deletes every other hidden partial file of that output (ranges of
another input version, fingerprint or split, temporary files of a killed writer, and
everything with ``fresh``, i.e. ``--overwrite``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import secrets
from pathlib import Path

import numpy as np

from . import _files as F

RANGE = "range-"
FORMAT = 1


def range_path(out: Path, index: int, count: int) -> Path:
    """The labels file of range ``index`` of ``count`` of ``out``."""
    out = Path(out)
    return out.with_name(f".{out.name}{F.PARTIAL}{RANGE}{index:04d}of{count:04d}.npy")


def record_path(path) -> Path:
    """The record (``.json``) of a range's labels file (``.npy``)."""
    path = str(path)
    return Path((path[:-4] if path.endswith(".npy") else path) + ".json")


def input_signature(path) -> dict:
    """What identifies the version of an input: resolved path, size and mtime (in ns); a
    folder (DICOM series): a digest of every file's relative path, size and mtime."""
    p = Path(path).resolve()
    if p.is_dir():
        h = hashlib.blake2b(digest_size=16)
        n = 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n += 1
        return {"path": str(p), "files": n, "digest": h.hexdigest()}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _digest(arr) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


def expected(chunk) -> dict:
    """The part of a record that must match for the range to be reused."""
    return {
        "format": FORMAT,
        "input": chunk.signature,
        "fingerprint": chunk.job.fingerprint,
        "index": chunk.index,
        "count": chunk.count,
        "planes": [[int(i) for i in p] for p in chunk.planes],
    }


def load_complete(chunk, plane_shape) -> dict | None:
    """The record of the chunk's range file when it is complete and matches, else None."""
    try:
        rec = json.loads(record_path(chunk.path).read_text(encoding="utf-8"))
        if not isinstance(rec, dict) or any(rec.get(k) != v for k, v in expected(chunk).items()):
            return None
        shape = [len(chunk.planes), *(int(n) for n in plane_shape)]
        counts = rec.get("counts")
        if rec.get("shape") != shape or rec.get("dtype") != "int32":
            return None
        if not isinstance(counts, list) or len(counts) != len(chunk.planes):
            return None
        arr = np.load(chunk.path, mmap_mode="r", allow_pickle=False)
        try:
            if list(arr.shape) != shape or arr.dtype != np.int32:
                return None
            if os.path.getsize(chunk.path) != rec.get("bytes") or _digest(arr) != rec.get(
                "digest"
            ):
                return None
        finally:
            del arr
    except (OSError, ValueError, TypeError, EOFError):  # missing, truncated, not ours
        return None
    return rec


def prepare(out: Path, chunks: list, plane_shape, fresh: bool) -> None:
    """Mark the complete ranges of ``chunks`` as reused (``chunk.reuse``: the record) and
    delete every other hidden partial file of ``out`` (all of them when ``fresh``)."""
    out = Path(out)
    keep = set()
    for c in chunks:
        rec = None if fresh else load_complete(c, plane_shape)
        c.reuse = rec
        if rec is not None:
            keep |= {str(Path(c.path)), str(record_path(c.path))}
    if out.parent.is_dir():
        for p in out.parent.glob(f".{glob.escape(out.name)}{F.PARTIAL}*"):
            if str(p) not in keep:
                with contextlib.suppress(OSError):
                    p.unlink()


def still_there(chunk) -> bool:
    """Cheap check on a worker that a range marked as reused was not deleted since."""
    try:
        return os.path.getsize(chunk.path) == chunk.reuse["bytes"] and (
            record_path(chunk.path).is_file()
        )
    except (OSError, KeyError, TypeError):
        return False


def _replace(tmp: str, path: Path, write) -> None:
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write(chunk, labels: np.ndarray, counts: list, description: dict) -> None:
    """The range's labels, then its record (each: temporary name, rename)."""
    path = Path(chunk.path)
    rec_path = record_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        rec_path.unlink()  # an old record never vouches for new labels
    token = f"{os.getpid()}-{secrets.token_hex(3)}"
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    _replace(f"{path}.{token}.npy", path, lambda fh: np.save(fh, labels))
    rec = {
        **expected(chunk),
        "shape": list(labels.shape),
        "dtype": "int32",
        "bytes": os.path.getsize(path),
        "digest": _digest(labels),
        "counts": [int(n) for n in counts],
        "description": description,
    }
    text = json.dumps(rec, default=str).encode()
    _replace(f"{rec_path}.{token}.json", rec_path, lambda fh: fh.write(text))


def remove(path) -> None:
    """Delete a range's labels file and its record."""
    for p in (Path(path), record_path(path)):
        with contextlib.suppress(OSError):
            p.unlink()
