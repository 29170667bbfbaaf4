"""``napari_sam2.batch``: many files in-process, prompt CSVs, resumability, the CLI front.

The cluster runs are in ``test_batch_cluster.py``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_sam2.batch import PromptFileError, PromptTable, segment_files
from napari_sam2.batch._files import PARTIAL, plan_outputs
from napari_sam2.cli import main
from napari_sam2.engine import Segmenter
from napari_sam2.io import load_labels

DATA = Path(__file__).resolve().parent / "data"
NUCLEI = DATA / "nuclei2d_dsb2018_uint16.tif"
NUCLEI_GT = DATA / "nuclei2d_dsb2018_uint16_labels.tif"
NUCLEI_3D = DATA / "nuclei3d_ovule_zyx_uint8.tif"
NUCLEI_3D_GT = DATA / "nuclei3d_ovule_zyx_uint8_labels.tif"
CROPS = {"a": (0, 0), "b": (160, 160), "c": (320, 0)}  # 160x160 crops of the real image


def centre(mask):
    d = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(int(d.argmax()), d.shape))


def make_crops(folder: Path, names=("a", "b")) -> dict:
    """Real nuclei crops as TIFFs; returns {name: (path, gt crop)}."""
    img, gt = tifffile.imread(NUCLEI), tifffile.imread(NUCLEI_GT)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in names:
        r, c = CROPS[n]
        p = folder / f"{n}.tif"
        tifffile.imwrite(p, img[r : r + 160, c : c + 160])
        out[n] = (p, gt[r : r + 160, c : c + 160])
    return out


def big_inner_nucleus(gt):
    """(id, centre) of the largest nucleus not touching the crop border."""
    best = None
    for i, sl in enumerate(ndi.find_objects(gt), 1):
        if sl is None or min(s.start for s in sl) < 3 or max(s.stop for s in sl) > 157:
            continue
        area = int((gt == i).sum())
        if best is None or area > best[0]:
            best = (area, i)
    return best[1], centre(gt == best[1])


def write_prompt_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "plane", "kind", "coordinates", "label"])
        w.writerows(rows)
    return path


@pytest.fixture
def crops(tmp_path):
    return make_crops(tmp_path / "in")


def point_csv(tmp_path, crops) -> Path:
    rows = []
    for p, gt in crops.values():
        _, (r, c) = big_inner_nucleus(gt)
        rows.append([p.name, "", "point", f"{r},{c}", ""])
    return write_prompt_csv(tmp_path / "prompts.csv", rows)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


# ------------------------------------------------------------------------ in-process
def test_prompt_csv_segments_each_file(tmp_path, crops, classical_segmenter):
    a_path, a_gt = crops["a"]
    b_path, b_gt = crops["b"]
    a_id, (ar, ac) = big_inner_nucleus(a_gt)
    b_id, (br, bc) = big_inner_nucleus(b_gt)
    sl = ndi.find_objects((b_gt == b_id).astype(int))[0]
    box = f"{sl[0].start - 2},{sl[1].start - 2},{sl[0].stop + 1},{sl[1].stop + 1}"
    prompts = write_prompt_csv(
        tmp_path / "p.csv",
        [["a.tif", "", "point", f"{ar},{ac}", ""], ["b.tif", "", "box", box, "7"]],
    )
    events = []
    summary = segment_files(
        [a_path, b_path], tmp_path / "out", prompts=prompts, segmenter=classical_segmenter,
        progress=events.append,
    )  # fmt: skip
    assert summary.counts == {"done": 2, "skipped": 0, "failed": 0}, summary.lines()
    la, info = load_labels(tmp_path / "out" / "a_labels.tif")
    lb, _ = load_labels(tmp_path / "out" / "b_labels.tif")
    assert la.shape == lb.shape == (160, 160)
    assert la[ar, ac] == 1 and iou(la == 1, a_gt == a_id) >= 0.5
    assert set(np.unique(lb)) == {0, 7}  # the CSV's label is the object's ID
    assert iou(lb == 7, b_gt == b_id) >= 0.5
    prov = info["provenance"]
    assert prov["command"] == "napari-sam2 segment" and prov["backend"] == "classical"
    assert prov["source_image"] == str(a_path.resolve())
    assert prov["objects"][1]["points_rc"] == [[ar, ac]]
    assert [e["event"] for e in events].count("file") == 2
    assert [e["event"] for e in events].count("plane") == 2
    assert summary.done[1].objects == [7]


def test_stack_plane_keeps_scale(tmp_path, classical_segmenter):
    gt = tifffile.imread(NUCLEI_3D_GT)
    z = 50
    nid = np.bincount(gt[z][gt[z] > 0]).argmax()
    r, c = centre(gt[z] == nid)
    p = write_prompt_csv(tmp_path / "p.csv", [[NUCLEI_3D.name, str(z), "point", f"{r} {c}", ""]])
    s = segment_files(NUCLEI_3D, tmp_path / "o", prompts=p, segmenter=classical_segmenter)
    assert s.ok, s.lines()
    labels, info = load_labels(tmp_path / "o" / "nuclei3d_ovule_zyx_uint8_labels.tif")
    assert labels.shape == gt.shape and labels[z, r, c] == 1
    assert not np.delete(labels, z, axis=0).any()
    assert info["axes"] == "ZYX"
    assert info["scale"][0] == pytest.approx(0.28371836, rel=1e-5)
    assert info["scale"][1] == pytest.approx(info["scale"][2])
    assert info["units"][1] == "micrometer"


def test_stack_without_plane_fails_that_file(tmp_path, crops, classical_segmenter):
    a_path, a_gt = crops["a"]
    _, (r, c) = big_inner_nucleus(a_gt)
    p = write_prompt_csv(
        tmp_path / "p.csv",
        [["a.tif", "", "point", f"{r},{c}", ""], [NUCLEI_3D.name, "", "point", "5,5", ""]],
    )
    s = segment_files(
        [a_path, NUCLEI_3D], tmp_path / "o", prompts=p, segmenter=classical_segmenter
    )
    assert [r.status for r in s.results] == ["done", "failed"]
    assert "plane" in s.results[1].reason


def test_napari_points_and_shapes_exports(tmp_path, crops, classical_segmenter):
    """Prompts saved from napari layers (napari's own CSV writer) drive the batch."""
    from napari.layers import Points, Shapes
    from napari_builtins.io._write import napari_write_points, napari_write_shapes

    a_path, a_gt = crops["a"]
    ids = [i for i in np.unique(a_gt) if i and (a_gt == i).sum() > 300]
    objs = [(i, ndi.find_objects((a_gt == i).astype(int))[0]) for i in ids]
    inner = [
        (i, sl) for i, sl in objs if min(s.start for s in sl) > 2 and max(s.stop for s in sl) < 157
    ]
    (id1, sl1), (id2, sl2) = inner[:2]
    pts = Points(np.array([centre(a_gt == id1)], float), features={"positive": [True]})
    rect = np.array([[sl1[0].start - 2, sl1[1].start - 2], [sl1[0].stop + 1, sl1[1].stop + 1]])
    (r0, r1), (c0, c1) = (sl2[0].start, sl2[0].stop), (sl2[1].start, sl2[1].stop)
    poly = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
    shp = Shapes(
        [np.array([rect[0], [rect[0, 0], rect[1, 1]], rect[1], [rect[1, 0], rect[0, 1]]]), poly],
        shape_type=["rectangle", "polygon"],
    )
    napari_write_points(str(tmp_path / "a_points.csv"), pts.data, pts._get_state())
    napari_write_shapes(str(tmp_path / "a_shapes.csv"), shp.data, shp._get_state())
    table = PromptTable().read(tmp_path / "a_points.csv").read(tmp_path / "a_shapes.csv")
    assert table.for_file(crops["b"][0], ["a", "b"]) is None  # "a_*.csv" belongs to a.tif
    s = segment_files(
        [a_path, crops["b"][0]], tmp_path / "o", prompts=table, segmenter=classical_segmenter
    )
    assert s.results[0].status == "done" and s.results[0].objects == [1, 2]
    assert s.results[1].status == "failed" and "no prompts" in s.results[1].reason
    labels = tifffile.imread(tmp_path / "o" / "a_labels.tif")
    assert iou(labels == 1, a_gt == id1) >= 0.5  # the box and the click in it
    assert iou(labels == 2, a_gt == id2) >= 0.3  # the polygon (a mask prompt)


def test_napari_negative_points_are_read(tmp_path):
    from napari.layers import Points
    from napari_builtins.io._write import napari_write_points

    pts = Points(np.array([[2, 10, 20], [2, 30, 40.5]]), features={"positive": [True, False]})
    napari_write_points(str(tmp_path / "pts.csv"), pts.data, pts._get_state())
    fp = PromptTable().read(tmp_path / "pts.csv").for_file(tmp_path / "any.tif")
    assert list(fp) == [(2,)]
    assert fp[(2,)].points == [(10.0, 20.0), (30.0, 40.5)]
    assert fp[(2,)].point_labels == [1, 0]


@pytest.mark.parametrize(
    ("row", "msg"),
    [
        (["a.tif", "", "circle", "1,2", ""], "kind"),
        (["a.tif", "", "point", "1,2,3", ""], "r,c"),
        (["a.tif", "", "box", "1,x,3,4", ""], "numbers"),
        (["a.tif", "1.5", "point", "1,2", ""], "plane"),
        (["a.tif", "", "point", "1,2", "zero"], "label"),
    ],
)
def test_bad_prompt_csv_is_a_usage_error(tmp_path, row, msg, capsys):
    p = write_prompt_csv(tmp_path / "p.csv", [row])
    with pytest.raises(PromptFileError, match=msg):
        PromptTable().read(p)
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((16, 16), np.uint8))
    assert main(["segment", str(img), "--prompts", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "p.csv row 2" in err and "Traceback" not in err


def test_outputs_mirror_folders_and_never_escape(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / "in" / sub).mkdir(parents=True)
    a, b = tmp_path / "in" / "x" / "img.tif", tmp_path / "in" / "y" / "img.tif"
    out = tmp_path / "out"
    plans = plan_outputs([a, b], out)
    assert [p for p, _ in plans] == [out / "x" / "img_labels.tif", out / "y" / "img_labels.tif"]
    assert [why for _, why in plans] == [None, None]
    (out).mkdir()
    (out / "x").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    plans = plan_outputs([a, b], out)
    assert plans[0][1] and "outside" in plans[0][1]
    assert plans[1][1] is None
    assert plan_outputs([a], None) == [(a.parent / "img_labels.tif", None)]
    same = plan_outputs([a, a.with_name("img.ome.tif")], None)
    assert same[1][1] and "also the output" in same[1][1]


def test_globs_folders_and_labels_files(tmp_path, crops, classical_segmenter):
    folder = tmp_path / "in"
    shutil.copy(NUCLEI_GT, folder / "gt_labels.tif")  # ground truth next to the inputs
    p = point_csv(tmp_path, crops)
    s = segment_files(
        [str(folder / "*.tif"), str(tmp_path / "nothing*.tif")], None, prompts=p,
        segmenter=classical_segmenter,
    )  # fmt: skip
    by_input = {Path(r.input).name: r for r in s.results}
    assert by_input["nothing*.tif"].status == "failed"
    assert by_input["nothing*.tif"].reason == "no file matches"
    assert by_input["gt_labels.tif"].status == "skipped"
    assert by_input["a.tif"].status == by_input["b.tif"].status == "done"
    assert (folder / "a_labels.tif").is_file()  # next to the input without --out
    again = segment_files(folder, None, prompts=p, segmenter=classical_segmenter)
    assert again.counts == {"done": 0, "skipped": 5, "failed": 0}  # 2 complete, 3 labels files


# ------------------------------------------------------------ failures and resuming
def test_corrupt_file_among_good_ones_cli(tmp_path, crops):
    bad = tmp_path / "in" / "broken.tif"
    bad.write_bytes(NUCLEI.read_bytes()[:5000])  # truncated real TIFF
    out, summ = tmp_path / "out", tmp_path / "summary.json"
    rc = main(["segment", str(tmp_path / "in" / "*.tif"), "--points", "80,80", "--out", str(out),
               "--backend", "classical", "--summary", str(summ), "--no-progress"])  # fmt: skip
    assert rc == 3
    assert (out / "a_labels.tif").is_file() and (out / "b_labels.tif").is_file()
    assert not (out / "broken_labels.tif").exists()
    report = json.loads(summ.read_text())
    assert report["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    failed = [f for f in report["files"] if f["status"] == "failed"]
    assert Path(failed[0]["input"]).name == "broken.tif" and "broken.tif" in failed[0]["reason"]
    assert not list(out.glob(f".*{PARTIAL}*"))


def test_summary_csv(tmp_path, crops, classical_segmenter):
    p = point_csv(tmp_path, crops)
    s = segment_files(tmp_path / "in", tmp_path / "o", prompts=p, segmenter=classical_segmenter)
    rows = list(csv.DictReader(s.write(tmp_path / "s.csv").read_text().splitlines()))
    assert [r["status"] for r in rows] == ["done", "done"]
    assert [Path(r["input"]).name for r in rows] == ["a.tif", "b.tif"]
    assert rows[0]["objects"] == "1" and rows[0]["attempts"] == "1"


def test_interrupted_run_leaves_no_partial_and_resumes(tmp_path, crops, classical_segmenter):
    p = point_csv(tmp_path, crops)
    out = tmp_path / "out"
    started = []

    def stop_at_second(job):
        started.append(Path(job.input).name)
        if len(started) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        segment_files(tmp_path / "in", out, prompts=p, segmenter=classical_segmenter,
                      on_task_start=stop_at_second)  # fmt: skip
    assert sorted(x.name for x in out.iterdir()) == ["a_labels.tif"]
    first = (out / "a_labels.tif").stat().st_mtime_ns
    s = segment_files(tmp_path / "in", out, prompts=p, segmenter=classical_segmenter)
    assert [r.status for r in s.results] == ["skipped", "done"]
    assert (out / "a_labels.tif").stat().st_mtime_ns == first  # not redone
    s = segment_files(tmp_path / "in", out, prompts=p, segmenter=classical_segmenter,
                      overwrite=True)  # fmt: skip
    assert [r.status for r in s.results] == ["done", "done"]


def test_crash_while_writing_leaves_nothing(tmp_path, crops, classical_segmenter, monkeypatch):
    """A write that dies half-way leaves neither the output nor its temporary file."""
    from napari_sam2.io.tiff import writer

    p = point_csv(tmp_path, crops)
    out = tmp_path / "out"

    def half_write(path, labels, provenance, **kw):
        Path(path).write_bytes(b"II*\x00half")
        raise OSError("disk full")

    monkeypatch.setattr(writer, "write_labels_tiff", half_write)
    s = segment_files(tmp_path / "in", out, prompts=p, segmenter=classical_segmenter)
    assert [r.reason for r in s.results] == ["disk full", "disk full"]
    assert list(out.iterdir()) == []


def test_stale_partial_and_truncated_output_are_redone(tmp_path, crops, classical_segmenter):
    p = point_csv(tmp_path, crops)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".a_labels.tif{PARTIAL}999-abcdef.tif"
    stale.write_bytes(b"left by a killed run")
    (out / "a_labels.tif").write_bytes(NUCLEI_GT.read_bytes()[:3000])  # truncated
    s = segment_files(tmp_path / "in", out, prompts=p, segmenter=classical_segmenter)
    assert [r.status for r in s.results] == ["done", "done"]
    assert not stale.exists()
    assert load_labels(out / "a_labels.tif")[1]["provenance"]["command"] == "napari-sam2 segment"


def test_foreign_labels_at_the_output_name_are_never_replaced(
    tmp_path, crops, classical_segmenter
):
    """Ground truth named like the output (``<stem>_labels.tif``, the usual convention) is
    left byte-identical and the file fails with the reason; ``overwrite=True`` replaces it."""
    p = point_csv(tmp_path, crops)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(NUCLEI_GT, out / "b_labels.tif")  # complete TIFF, but not ours
    before = (out / "b_labels.tif").read_bytes()
    s = segment_files(tmp_path / "in", out, prompts=p, segmenter=classical_segmenter)
    assert [r.status for r in s.results] == ["done", "failed"]
    assert "not written by napari-sam2" in s.results[1].reason
    assert "--overwrite" in s.results[1].reason
    assert (out / "b_labels.tif").read_bytes() == before
    s = segment_files(tmp_path / "in", out, prompts=p, segmenter=classical_segmenter,
                      overwrite=True)  # fmt: skip
    assert [r.status for r in s.results] == ["done", "done"]
    assert load_labels(out / "b_labels.tif")[1]["provenance"]["command"] == "napari-sam2 segment"


def test_changed_prompts_are_reported_on_skip(tmp_path, crops, classical_segmenter):
    p = point_csv(tmp_path, crops)
    segment_files(tmp_path / "in", tmp_path / "o", prompts=p, segmenter=classical_segmenter)
    rows = list(csv.reader(p.read_text().splitlines()))[1:]
    rows[0][3] = "5,5"  # a.tif gets another click
    write_prompt_csv(p, rows)
    s = segment_files(tmp_path / "in", tmp_path / "o", prompts=p, segmenter=classical_segmenter)
    assert s.results[0].status == "skipped" and "--overwrite" in s.results[0].reason
    assert s.results[1].reason == "complete output exists"


# ------------------------------------------------------------- optional engine parts
def test_auto_mode(tmp_path, crops, classical_segmenter):
    s = segment_files(crops["a"][0], tmp_path / "o", auto=True, segmenter=classical_segmenter)
    [r] = s.results
    if hasattr(Segmenter, "segment_everything"):
        assert r.status == "done" and len(r.objects) >= 3
        labels = tifffile.imread(r.output)
        assert set(np.unique(labels)) - {0} == set(r.objects)
    else:
        assert r.status == "failed" and "segment_everything" in r.reason
        assert not Path(r.output).exists()


def test_propagate_mode(tmp_path, classical_segmenter):
    gt = tifffile.imread(NUCLEI_3D_GT)
    z = 50
    nid = np.bincount(gt[z][gt[z] > 0]).argmax()
    r, c = centre(gt[z] == nid)
    p = write_prompt_csv(tmp_path / "p.csv", [[NUCLEI_3D.name, str(z), "point", f"{r},{c}", ""]])
    s = segment_files(NUCLEI_3D, tmp_path / "o", prompts=p, propagate=True,
                      segmenter=classical_segmenter)  # fmt: skip
    [res] = s.results
    if hasattr(Segmenter, "propagate"):
        assert res.status == "done" and res.planes > 1
        labels = tifffile.imread(res.output)
        assert (labels == 1).any(axis=(1, 2)).sum() == res.planes
    else:
        assert res.status == "failed" and "propagate" in res.reason


# ------------------------------------------------------------------------------ CLI
def test_cli_points_for_every_file_and_resume(tmp_path, crops, capsys):
    args = ["segment", str(tmp_path / "in" / "a.tif"), str(tmp_path / "in" / "b.tif"),
            "--points", "80,80", "--backend", "classical", "--out", str(tmp_path / "o"),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2 done, 0 skipped, 0 failed" in out
    for n in "ab":
        labels = tifffile.imread(tmp_path / "o" / f"{n}_labels.tif")
        assert labels[80, 80] == 1
    assert main(args) == 0
    assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().out


def test_cli_single_output_with_batch_option(tmp_path, crops, capsys):
    """-o FILE still names the output when a batch-only option is used."""
    out = tmp_path / "one.tif"
    args = ["segment", str(crops["a"][0]), "--points", "80,80", "--backend", "classical",
            "-o", str(out), "--summary", str(tmp_path / "s.csv"), "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert tifffile.imread(out)[80, 80] == 1
    assert main(args) == 0  # -o always rewrites its file, as before
    assert "1 done" in capsys.readouterr().out
    many = ["segment", str(crops["a"][0]), str(crops["b"][0]), "--points", "1,1", "-o", str(out)]
    assert main(many) == 2
    assert "--out DIR" in capsys.readouterr().err


def test_cli_needs_prompts_or_auto(tmp_path, crops, capsys):
    assert main(["segment", str(crops["a"][0]), "--out", str(tmp_path / "o")]) == 2
    assert "--auto" in capsys.readouterr().err
    assert main(["segment", str(crops["a"][0]), "--auto", "--workers", "0"]) == 2


def test_segment_layers_adds_labels(tmp_path, crops):
    """From napari: the files of the open image layers, results added as Labels layers."""
    from napari.components import ViewerModel
    from napari.layers._source import layer_source

    from napari_sam2.batch import segment_layers
    from napari_sam2.batch._prompts import from_lists

    viewer = ViewerModel()
    for path in (crops["a"][0], NUCLEI_3D):  # as napari's File > Open does
        with layer_source(path=str(path)):
            viewer.add_image(tifffile.imread(path), name=path.name.split(".")[0])
    viewer.add_image(np.zeros((8, 8)), name="not from a file")
    s = segment_layers(viewer, tmp_path / "o", prompts=from_lists([(80, 80)], plane=()),
                       backend="classical")  # fmt: skip
    assert [r.status for r in s.results] == ["done", "failed"]  # the stack needs a plane
    [layer] = s.layers
    assert type(layer).__name__ == "Labels" and layer.name == "a labels"
    assert layer.data[80, 80] == 1
    assert layer.metadata["napari_sam2"]["command"] == "napari-sam2 segment"
    assert len(viewer.layers) == 4


def test_killed_cli_run_leaves_only_complete_outputs(tmp_path):
    """SIGKILL the command once its first output exists: whatever was running then, every
    output present is complete, and a rerun does only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from napari_sam2.batch._outputs import read_output_record

    make_crops(tmp_path / "in", ("a", "b", "c"))
    exe = Path(sys.executable).with_name("napari-sam2")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "napari_sam2.cli"]
    args = [*cmd, "segment", "in/*.tif", "--points", "80,80", "--backend", "classical",
            "--out", "out", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    first = tmp_path / "out" / "a_labels.tif"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    present = sorted((tmp_path / "out").glob("*_labels.tif"))
    assert first in present
    for p in present:
        assert read_output_record(p) is not None, p  # complete, with provenance
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    n_done = 3 - len(present)
    assert f"{n_done} done, {len(present)} skipped, 0 failed" in r.stdout
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == [
        "a_labels.tif", "b_labels.tif", "c_labels.tif"
    ]  # fmt: skip


def test_unreadable_medical_and_unknown_inputs_fail_with_the_readers_reason(
    tmp_path, classical_segmenter
):
    """A broken .nii.gz fails with the NIfTI reader's typed error; a file of no known kind
    with the list of what is read; the other files go on, and no output is left behind.
    (Real NIfTI/DICOM inputs: tests/test_batch_medical.py.)"""
    from napari_sam2.batch import PlanePrompts

    (tmp_path / "in").mkdir()
    vol = tmp_path / "in" / "head.nii.gz"
    vol.write_bytes(b"not really nifti")
    png = tmp_path / "in" / "photo.png"
    png.write_bytes(b"\x89PNG not an image we read")
    good = tmp_path / "in" / "good.tif"
    tifffile.imwrite(good, np.pad(np.full((8, 8), 200, np.uint8), 4))
    prompts = {(): PlanePrompts()}
    prompts[()].add_point((8, 8), 1)
    s = segment_files([vol, png, good], tmp_path / "o", prompts=prompts,
                      segmenter=classical_segmenter)  # fmt: skip
    by_name = {Path(r.input).name: r for r in s.results}
    assert by_name["head.nii.gz"].status == "failed"
    assert "cannot read head.nii.gz as NIfTI" in by_name["head.nii.gz"].reason
    assert by_name["photo.png"].status == "failed"
    assert "photo.png is not an image napari-sam2 reads" in by_name["photo.png"].reason
    assert by_name["good.tif"].status == "done"
    assert sorted(x.name for x in (tmp_path / "o").iterdir()) == ["good_labels.tif"]


def test_cli_next_to_input_keeps_ground_truth(tmp_path, capsys):
    """``napari-sam2 segment img.tif --points r,c`` (no -o, no --out) writes next to the
    input: a ground-truth ``img_labels.tif`` there is kept and the exit code is 3."""
    from napari_sam2.cli import main

    img, gt = tmp_path / "img.tif", tmp_path / "img_labels.tif"
    shutil.copy(NUCLEI, img)
    shutil.copy(NUCLEI_GT, gt)
    before = gt.read_bytes()
    args = ["segment", str(img), "--points", "337,166", "--backend", "classical", "--no-progress"]
    assert main(args) == 3
    assert gt.read_bytes() == before
    assert "not written by napari-sam2" in capsys.readouterr().out


def test_bare_name_in_csv_matches_inputs_even_with_a_copy_next_to_the_csv(
    tmp_path, crops, classical_segmenter
):
    """A bare file name in the prompt CSV matches every input of that name, also when a
    file of that name happens to lie next to the CSV (it used to bind to that copy only)."""
    p = point_csv(tmp_path, crops)
    for src, _ in crops.values():
        shutil.copy(src, tmp_path / src.name)  # a copy beside prompts.csv
    s = segment_files(tmp_path / "in", tmp_path / "o", prompts=p, segmenter=classical_segmenter)
    assert [r.status for r in s.results] == ["done", "done"], [r.reason for r in s.results]
    rows = list(csv.reader(p.read_text().splitlines()))[1:]
    rows[0][0] = f"in/{rows[0][0]}"  # a relative path still names that file only
    write_prompt_csv(p, rows)
    s = segment_files(tmp_path / "in", tmp_path / "o2", prompts=p, segmenter=classical_segmenter)
    assert [r.status for r in s.results] == ["done", "done"]


def test_csv_rows_for_a_file_that_is_no_input_are_reported(tmp_path, crops, classical_segmenter):
    """A misspelt name in the CSV's file column is listed as skipped with the reason,
    instead of being ignored without a word."""
    p = point_csv(tmp_path, crops)
    rows = list(csv.reader(p.read_text().splitlines()))[1:]
    rows.append(["typo_a.tif", "", "point", "5,5", ""])
    write_prompt_csv(p, rows)
    s = segment_files(tmp_path / "in", tmp_path / "o", prompts=p, segmenter=classical_segmenter)
    assert [r.status for r in s.results] == ["done", "done", "skipped"]
    assert s.results[2].input == "typo_a.tif"
    assert s.results[2].reason == "in the prompts but not an input"
    assert any("typo_a.tif" in line for line in s.lines())


def test_cli_propagate_says_where_each_object_stopped(tmp_path, shared_data, capsys):
    """Seen as a new user: ``--propagate`` on the bacteria time-lapse wrote frame 5 only and
    the console said just 'done (1 object(s))'; now it says how far and why it stopped."""
    out = tmp_path / "bac.tif"
    args = ["segment", str(shared_data / "bacteria_phase_tyx_uint8.tif"), "--points",
            "160,100", "--plane", "5", "--propagate", "--backend", "classical", "-o",
            str(out), "--no-progress", "--summary", str(tmp_path / "s.json")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    written = np.flatnonzero(tifffile.imread(out).any(axis=(1, 2)))
    assert "propagated from plane [5] along axis 0: Propagated 1 object(s)" in text
    assert f"{len(written) - 1} plane(s) written" in text
    assert "(object 1: forward " in text and ", backward " in text
    summary = json.loads((tmp_path / "s.json").read_text())
    assert "object 1: forward" in summary["files"][0]["notes"][0]
