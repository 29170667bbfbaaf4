"""Resuming a split (``--plane-chunks``) file after an interruption: the complete plane-range
files of the earlier run that match the input, the fingerprint and the split are reused (not
segmented again); everything else is deleted and redone; the output equals the unsplit run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.batch import _chunks, segment_files
from test_batch_planes import OVULE, Flaky

STEM = "ovule_membrane_zyx_uint8"
OUT = f"{STEM}_labels.tif"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C / a killed process: not caught by the batch (unlike a bad input)."""


@pytest.fixture
def calls(monkeypatch):
    """The indices of the ranges segmented (``segment_range`` counted); ``calls.stop_at``:
    the range index at which the run is interrupted."""
    done: list[int] = []
    real = _chunks.segment_range

    def counted(chunk, seg, on_plane=None):
        if chunk.index == counted.stop_at:
            counted.stop_at = None
            raise Interrupted(f"interrupted in range {chunk.index}")
        done.append(chunk.index)
        return real(chunk, seg, on_plane)

    counted.done = done
    counted.stop_at = None
    monkeypatch.setattr(_chunks, "segment_range", counted)
    return counted


def run(inp, out, seg, **kw):
    kw = {"auto": True, "plane_chunks": 5, "segmenter": seg, **kw}
    return segment_files(inp, out, **kw)


def interrupt(inp, out, seg, calls, at=3, **kw):
    """A run stopped in range ``at``: ranges before it are complete on disk."""
    calls.stop_at = at
    with pytest.raises(Interrupted):
        run(inp, out, seg, **kw)
    assert calls.done == list(range(at))
    assert not (Path(out) / OUT).exists()
    calls.done.clear()


def hidden(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def test_interrupted_run_resumes_with_the_unsplit_labels(tmp_path, classical_segmenter, calls):
    ref = segment_files(OVULE, tmp_path / "ref", auto=True, segmenter=classical_segmenter)
    [a] = ref.results
    interrupt(OVULE, tmp_path / "o", classical_segmenter, calls, at=3)
    kept = hidden(tmp_path / "o")
    assert [n.rsplit(".partial-", 1)[1] for n in kept] == [
        f"range-{i:04d}of0005.{ext}" for i in range(3) for ext in ("json", "npy")
    ]
    s = run(OVULE, tmp_path / "o", classical_segmenter)
    [b] = s.results
    assert calls.done == [3, 4]  # ranges 0-2 were not segmented again
    assert b.status == "done" and b.notes == ["split into 5 plane ranges",
                                              "3 of 5 plane ranges reused"]  # fmt: skip
    assert f"resumed {OVULE}: 3 of 5 plane ranges reused" in s.lines()
    assert b.planes == 32 and b.objects == a.objects and len(a.objects) > 100
    np.testing.assert_array_equal(tifffile.imread(b.output), tifffile.imread(a.output))
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [OUT]  # ranges deleted
    # the next run skips the complete output; a fresh split run reuses nothing
    assert run(OVULE, tmp_path / "o", classical_segmenter).counts["skipped"] == 1
    assert calls.done == [3, 4]
    plain = run(OVULE, tmp_path / "plain", classical_segmenter)
    assert plain.results[0].notes == ["split into 5 plane ranges"]
    assert not any("resumed" in line for line in plain.lines())


def test_failed_range_is_redone_and_finished_ones_reused(tmp_path, classical_segmenter, calls):
    """A range that fails (a bad plane) fails the file; once the cause is gone, only that
    range and the ones never started are segmented."""
    ref = run(OVULE, tmp_path / "ref", classical_segmenter, plane_chunks=1)
    first = run(OVULE, tmp_path / "o", Flaky(classical_segmenter), plane_chunks=4)
    assert first.results[0].reason == "plane 20 is unreadable" and calls.done == [0, 1, 2]
    calls.done.clear()
    s = run(OVULE, tmp_path / "o", classical_segmenter, plane_chunks=4)
    [b] = s.results
    assert calls.done == [2, 3] and b.notes[1] == "2 of 4 plane ranges reused"
    np.testing.assert_array_equal(
        tifffile.imread(b.output), tifffile.imread(ref.results[0].output)
    )
    assert b.objects == ref.results[0].objects


def test_ranges_of_other_settings_split_or_input_are_not_reused(
    tmp_path, classical_segmenter, calls
):
    out = tmp_path / "o"
    # other settings (another fingerprint): all redone, the old ranges deleted
    interrupt(OVULE, out, classical_segmenter, calls, at=3, contrast_limits=(0, 50))
    s = run(OVULE, out, classical_segmenter, contrast_limits=(0, 200))
    assert calls.done == [0, 1, 2, 3, 4] and s.results[0].notes == ["split into 5 plane ranges"]
    ref = segment_files(OVULE, tmp_path / "ref", auto=True, contrast_limits=(0, 200),
                        segmenter=classical_segmenter)  # fmt: skip
    np.testing.assert_array_equal(
        tifffile.imread(s.results[0].output), tifffile.imread(ref.results[0].output)
    )
    assert hidden(out) == []
    calls.done.clear()
    # another split of the same file: its ranges are other planes, all redone
    (out / OUT).unlink()
    interrupt(OVULE, out, classical_segmenter, calls, at=2, plane_chunks=4)
    s = run(OVULE, out, classical_segmenter)
    assert calls.done == [0, 1, 2, 3, 4] and hidden(out) == []
    calls.done.clear()
    # a changed input (same size, other content and modification time): all redone
    inp = tmp_path / "in" / OVULE.name
    inp.parent.mkdir()
    shutil.copy(OVULE, inp)
    interrupt(inp, tmp_path / "o2", classical_segmenter, calls, at=3)
    data = tifffile.imread(inp)
    tifffile.imwrite(inp, data[::-1].copy())
    st = os.stat(inp)
    os.utime(inp, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    s = run(inp, tmp_path / "o2", classical_segmenter)
    assert calls.done == [0, 1, 2, 3, 4]
    flipped = tifffile.imread(s.results[0].output)
    ref = segment_files(inp, tmp_path / "ref2", auto=True, segmenter=classical_segmenter)
    np.testing.assert_array_equal(flipped, tifffile.imread(ref.results[0].output))


def test_incomplete_or_tampered_ranges_are_redone(tmp_path, classical_segmenter, calls):
    """Only a range whose labels and matching record were both renamed into place counts."""
    out = tmp_path / "o"
    ref = run(OVULE, tmp_path / "ref", classical_segmenter, plane_chunks=1)
    interrupt(OVULE, out, classical_segmenter, calls, at=4)
    name = f".{OUT}.partial-range-"
    (out / f"{name}0000of0005.json").unlink()  # killed between the two renames
    npy1 = out / f"{name}0001of0005.npy"
    npy1.write_bytes(npy1.read_bytes()[:-100])  # truncated labels
    rec2 = out / f"{name}0002of0005.json"
    rec = json.loads(rec2.read_text())
    rec["digest"] = "0" * 32  # a record that does not vouch for these labels
    rec2.write_text(json.dumps(rec))
    stray = out / f"{name}0004of0005.npy.123-abcdef.npy"  # a writer's temporary file
    stray.write_bytes(b"\x93NUMPY")
    s = run(OVULE, out, classical_segmenter)
    [b] = s.results
    assert calls.done == [0, 1, 2, 4] and b.notes[1] == "1 of 5 plane ranges reused"
    np.testing.assert_array_equal(
        tifffile.imread(b.output), tifffile.imread(ref.results[0].output)
    )
    assert b.objects == ref.results[0].objects and hidden(out) == []


def test_overwrite_redoes_every_range(tmp_path, classical_segmenter, calls):
    out = tmp_path / "o"
    interrupt(OVULE, out, classical_segmenter, calls, at=3)
    s = run(OVULE, out, classical_segmenter, overwrite=True)
    assert calls.done == [0, 1, 2, 3, 4] and s.results[0].notes == ["split into 5 plane ranges"]
    assert sorted(p.name for p in out.iterdir()) == [OUT]
    calls.done.clear()
    # and a complete output with --overwrite: split again from scratch
    s = run(OVULE, out, classical_segmenter, overwrite=True)
    assert s.results[0].status == "done" and calls.done == [0, 1, 2, 3, 4]
