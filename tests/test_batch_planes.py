"""``--plane`` for ``--auto`` (an item per axis: index, all, ranges; per-file errors) and the
splitting of large ``--auto`` stacks into plane ranges (in-process; the cluster run is in
``test_batch_cluster.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.batch import segment_files
from napari_sam2.batch._chunks import PLANES_PER_CHUNK, plan_chunks
from napari_sam2.batch._files import InputError
from napari_sam2.batch._planes import parse_plane_spec, resolve_planes
from napari_sam2.batch._prompts import from_lists
from napari_sam2.batch._work import Job, Settings
from napari_sam2.cli import main
from test_batch import NUCLEI_3D, make_crops

DATA = Path(__file__).resolve().parent / "data"
OVULE = DATA / "ovule_membrane_zyx_uint8.tif"  # 32 x 128 x 128
CELLS_4D = DATA / "ovule_nuclei_membrane_zcyx_uint16.ome.tif"  # Z C Y X = 5 2 100 100


# --------------------------------------------------------------------------- --plane
def test_plane_spec_parsing_and_resolution():
    assert parse_plane_spec(None) is None and parse_plane_spec("") is None
    assert parse_plane_spec("all, 12") == ("all", "12")
    assert parse_plane_spec(":,*,-1,10:") == ("all", "all", "-1", "10:")
    assert parse_plane_spec((3, "all")) == ("3", "all")
    for bad in ("x", "1:2:3", "1.5", "a:b"):
        with pytest.raises(ValueError, match="one per non-spatial axis"):
            parse_plane_spec(bad)
    every, _ = resolve_planes(None, (2, 3))
    assert every == [(t, z) for t in range(2) for z in range(3)]
    assert resolve_planes(("all", "1"), (2, 3), "TZ")[0] == [(0, 1), (1, 1)]
    assert resolve_planes(("-1",), (30,), "Z")[0] == [(29,)]
    assert resolve_planes(("10:",), (12,), "Z")[0] == [(10,), (11,)]
    assert resolve_planes(("12",), (), "")[0] == [()]  # 2-D: one plane, with a note
    assert "does not apply" in resolve_planes(("12",), (), "")[1][0]
    with pytest.raises(
        InputError, match=r"index 32 is out of range for axis Z: it has 32 planes \(0-31\)"
    ):
        resolve_planes(("32",), (32,), "Z")
    with pytest.raises(
        InputError, match=r"2 item.s. but the image has 1 non-spatial axes \(Z=32\)"
    ):
        resolve_planes(("all", "3"), (32,), "Z")
    with pytest.raises(InputError, match="selects no plane"):
        resolve_planes(("40:50",), (32,), "Z")


def test_cli_auto_plane_per_file(tmp_path, capsys):
    """--auto --plane 50 over a 2-D image, a 100-plane and a 32-plane stack: the 2-D image
    is segmented (the plane does not apply), the big stack on plane 50 only, the small
    stack fails with the reason; exit code 3."""
    make_crops(tmp_path / "in", ("a",))
    for p in (NUCLEI_3D, OVULE):
        (tmp_path / "in" / p.name).write_bytes(p.read_bytes())
    args = ["segment", str(tmp_path / "in"), "--auto", "--plane", "50", "--backend",
            "classical", "--out", str(tmp_path / "o"), "--no-progress",
            "--summary", str(tmp_path / "s.json")]  # fmt: skip
    assert main(args) == 3
    out = capsys.readouterr().out
    assert (
        "FAILED" in out and "index 50 is out of range for axis Z: it has 32 planes (0-31)" in out
    )
    assert "2 done, 0 skipped, 1 failed" in out
    import json

    files = {
        Path(f["input"]).name: f for f in json.loads((tmp_path / "s.json").read_text())["files"]
    }
    assert "does not apply" in files["a.tif"]["notes"][0]
    assert tifffile.imread(tmp_path / "o" / "a_labels.tif").max() >= 3
    big = tifffile.imread(tmp_path / "o" / f"{NUCLEI_3D.stem}_labels.tif")
    assert big.shape == (100, 100, 100)
    assert list(np.nonzero(big.any(axis=(1, 2)))[0]) == [50]
    assert not (tmp_path / "o" / f"{OVULE.stem}_labels.tif").exists()


def test_cli_plane_ranges_negative_and_bad_forms(tmp_path, capsys):
    base = ["segment", str(OVULE), "--auto", "--backend", "classical", "--no-progress"]
    assert main([*base, "--plane", "-1", "--out", str(tmp_path / "last")]) == 0
    last = tifffile.imread(tmp_path / "last" / f"{OVULE.stem}_labels.tif")
    assert list(np.nonzero(last.any(axis=(1, 2)))[0]) == [31]
    assert main([*base, "--plane", "3:6", "--out", str(tmp_path / "r")]) == 0
    r = tifffile.imread(tmp_path / "r" / f"{OVULE.stem}_labels.tif")
    assert list(np.nonzero(r.any(axis=(1, 2)))[0]) == [3, 4, 5]
    capsys.readouterr()
    assert main([*base, "--plane", "all,3", "--out", str(tmp_path / "x")]) == 3
    assert "--plane all,3 gives 2 item(s)" in capsys.readouterr().out
    assert main(["segment", str(OVULE), "--points", "5,5", "--plane", "all"]) == 2
    assert "need one plane" in capsys.readouterr().err
    assert main(["segment", str(OVULE), "--auto", "--plane", "z"]) == 2
    assert "bad --plane" in capsys.readouterr().err


def test_prompts_plane_counts_from_the_end(tmp_path, classical_segmenter):
    s = segment_files(OVULE, tmp_path, prompts=from_lists([(64, 64)], plane=(-1,)),
                      segmenter=classical_segmenter)  # fmt: skip
    assert s.ok, s.lines()
    labels = tifffile.imread(s.results[0].output)
    assert list(np.nonzero(labels.any(axis=(1, 2)))[0]) == [31]


# ---------------------------------------------------------------------- plane chunks
def test_chunked_auto_gives_the_unchunked_labels(tmp_path, classical_segmenter):
    """The split/assembly logic in-process: 3 plane ranges, the same labels and IDs, no
    temporary file left, one result per file."""
    one = segment_files(OVULE, tmp_path / "one", auto=True, planes="2:30",
                        segmenter=classical_segmenter)  # fmt: skip
    three = segment_files(OVULE, tmp_path / "three", auto=True, planes="2:30", plane_chunks=3,
                          segmenter=classical_segmenter)  # fmt: skip
    [a], [b] = one.results, three.results
    assert a.status == b.status == "done" and b.notes == ["split into 3 plane ranges"]
    assert a.objects == b.objects and a.planes == b.planes == 28 and len(a.objects) > 100
    la, lb = tifffile.imread(a.output), tifffile.imread(b.output)
    np.testing.assert_array_equal(la, lb)
    assert [p.name for p in (tmp_path / "three").iterdir()] == [Path(b.output).name]
    again = segment_files(OVULE, tmp_path / "three", auto=True, planes="2:30", plane_chunks=3,
                          segmenter=classical_segmenter)  # fmt: skip
    assert again.counts["skipped"] == 1


def test_plan_chunks_rules(tmp_path, monkeypatch):
    from napari_sam2.batch import _chunks

    auto = Job(str(OVULE), str(tmp_path / "o.tif"), None, Settings(auto=True))
    chunks = plan_chunks(auto, 5)
    assert [len(c.planes) for c in chunks] == [6, 7, 6, 7, 6]
    assert [p for c in chunks for p in c.planes] == [(z,) for z in range(32)]
    assert all(Path(c.path).name.startswith(".o.tif.partial-") for c in chunks)
    assert plan_chunks(auto, 1) is None
    assert len(plan_chunks(auto, 99)) == 32  # at most one plane per task
    assert plan_chunks(auto, None) is None  # 32 planes: not split by default
    assert PLANES_PER_CHUNK >= 16
    monkeypatch.setattr(_chunks, "AUTO_SPLIT_ABOVE", 16)
    monkeypatch.setattr(_chunks, "PLANES_PER_CHUNK", 10)
    assert [len(c.planes) for c in plan_chunks(auto, None)] == [8, 8, 8, 8]  # ceil(32 / 10)
    prompted = Job(str(OVULE), str(tmp_path / "p.tif"), from_lists([(5, 5)], plane=(3,)),
                   Settings(auto=True))  # fmt: skip
    assert plan_chunks(prompted, 4) is None  # prompts and propagation need the whole stack
    assert (
        plan_chunks(Job(str(OVULE), "x.tif", None, Settings(auto=True, propagate=True)), 4) is None
    )
    flat = Job(str(DATA / "bacteria_phase_2d_uint8.tif"), "y.tif", None, Settings(auto=True))
    assert plan_chunks(flat, 4) is None  # 2-D: one plane
    cells = Job(str(CELLS_4D), "z.tif", None, Settings(auto=True))
    assert [len(c.planes) for c in plan_chunks(cells, 2)] == [2, 3]  # channels are no planes


class Flaky:
    """``segmenter``, except that plane 20 cannot be segmented (a failing range)."""

    def __init__(self, segmenter):
        self._seg = segmenter

    def __getattr__(self, name):
        return getattr(self._seg, name)

    def segment_everything(self, labels=None, plane=(), **kw):
        if tuple(plane) == (20,):
            raise ValueError("plane 20 is unreadable")
        return self._seg.segment_everything(labels, plane, **kw)


def test_failing_chunk_fails_the_file_and_keeps_the_finished_ranges(tmp_path, classical_segmenter):
    flaky = Flaky(classical_segmenter)
    s = segment_files(OVULE, tmp_path / "o", auto=True, plane_chunks=4, segmenter=flaky)
    [r] = s.results
    assert r.status == "failed" and r.reason == "plane 20 is unreadable"
    # no output; ranges 0 and 1 (planes 0-15) are kept for the next run (test_batch_resume)
    kept = sorted(p.name for p in (tmp_path / "o").iterdir())
    name = ".ovule_membrane_zyx_uint8_labels.tif.partial-range-"
    assert kept == [f"{name}{i:04d}of0004.{ext}" for i in (0, 1) for ext in ("json", "npy")]
