"""A DICOM input holding several series (a DICOMDIR, a folder of series): one series is
segmented (``--series N``, default 0); the result and the printed summary name the series
left out and how to pick them; each picked series gets its own output, side by side;
``--series all`` segments every series, one output each."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_sam2.batch import segment_files
from napari_sam2.cli import main

pytest.importorskip("pydicom")

MED = Path(__file__).resolve().parent / "data" / "medical"
DICOMDIR = MED / "dicomdir"  # 3 patients, 24 series (tests/data/medical/README.md)
CT_SERIES = DICOMDIR / "98892001" / "CT5N"  # one series


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DICOM geometry doubts of the tiny test series
        yield


def _series_note(result) -> str:
    [note] = [n for n in result.notes if "DICOM series not segmented" in n]
    return note


def test_dicomdir_auto_names_the_series_left_out(tmp_path):
    s = segment_files(DICOMDIR, tmp_path, auto=True, backend="classical")
    [r] = s.results
    assert r.status == "done" and r.output == str(tmp_path / "dicomdir_labels.nii.gz")
    note = _series_note(r)
    assert note.startswith(
        "dicomdir holds 24 DICOM series: segmented 0 'Cervical LAT' (1 image); "
        "23 other DICOM series not segmented: 1 'Cervical OBLI 1' (1 image), "
    )
    assert "3 'Routine Brain' (4 images)" in note and "and 15 more" in note
    assert "--series N" in note and "--series all" in note
    assert "dicomdir_seriesN_labels" in note
    assert f"note    {DICOMDIR}: {note}" in s.lines()


def test_each_picked_series_has_its_own_output(tmp_path):
    first = segment_files(DICOMDIR, tmp_path, auto=True, backend="classical")
    s = segment_files(DICOMDIR, tmp_path, auto=True, backend="classical", series=3)
    [r] = s.results
    assert r.status == "done", s.lines()
    assert r.output == str(tmp_path / "dicomdir_series3_labels.nii.gz")
    assert r.planes == 4  # 'Routine Brain': 4 slices, not the 1-slice series 0
    assert nib.load(r.output).shape == (16, 16, 4)
    note = _series_note(r)
    assert "segmented 3 'Routine Brain' (4 images)" in note and "0 'Cervical LAT'" in note
    # series 0's output is still there and untouched; a rerun of it is skipped as complete
    assert Path(first.results[0].output).is_file()
    again = segment_files(DICOMDIR, tmp_path, auto=True, backend="classical")
    assert again.results[0].status == "skipped"
    assert again.results[0].reason == "complete output exists"


def test_one_series_has_no_note(tmp_path):
    s = segment_files(CT_SERIES, tmp_path, auto=True, backend="classical")
    [r] = s.results
    assert r.status == "done"
    assert not [n for n in r.notes if "series" in n]
    assert not [line for line in s.lines() if line.startswith("note")]


def test_cli_prints_the_series_note(tmp_path, capsys):
    args = ["segment", str(DICOMDIR), "--auto", "--backend", "classical", "--out", str(tmp_path)]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"note    {DICOMDIR}: dicomdir holds 24 DICOM series" in out
    assert main([*args, "--no-progress", "--series", "6"]) == 0
    out = capsys.readouterr().out
    assert "dicomdir_series6_labels.nii.gz" in out
    assert "segmented 6 'SmartScore - Gated 0.5 sec' (5 images)" in out
    labels = np.asanyarray(nib.load(tmp_path / "dicomdir_series6_labels.nii.gz").dataobj)
    assert labels.shape == (16, 16, 5)


def test_series_all_segments_every_series(tmp_path):
    from napari_sam2.io.medical.dicom import list_series

    listing = list_series(DICOMDIR)
    assert len(listing) == 24 and listing[3] == {"name": "Routine Brain", "images": 4}
    first = segment_files(DICOMDIR, tmp_path, auto=True, backend="classical")
    s = segment_files(DICOMDIR, tmp_path, auto=True, backend="classical", series="all")
    assert len(s.results) == 24
    by_output = {Path(r.output).name: r for r in s.results}
    # series 0 was done by the first run, with the same settings: complete, skipped
    assert by_output["dicomdir_labels.nii.gz"].status == "skipped"
    assert Path(first.results[0].output).name == "dicomdir_labels.nii.gz"
    done = [r for r in s.results if r.status == "done"]
    assert len(done) == 23, s.lines()
    assert {Path(r.output).name for r in done} == {
        f"dicomdir_series{k}_labels.nii.gz" for k in range(1, 24)
    }
    r3 = by_output["dicomdir_series3_labels.nii.gz"]
    assert r3.planes == 4 and nib.load(r3.output).shape == (16, 16, 4)
    assert "DICOM series 3 of 24: 3 'Routine Brain' (4 images)" in r3.notes
    assert not [n for r in s.results for n in r.notes if "not segmented" in n]
    assert not [line for line in s.lines() if line.startswith("note")]
    # a one-series input is one job, without a series in its name
    one = segment_files(CT_SERIES, tmp_path / "ct", auto=True, backend="classical", series="all")
    assert [Path(r.output).name for r in one.results] == ["CT5N_labels.nii.gz"]


def test_series_all_cli(tmp_path, capsys):
    args = ["segment", str(DICOMDIR), "--auto", "--backend", "classical", "--no-progress"]
    assert main([*args, "--series", "all", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "24 file(s): 24 done, 0 skipped, 0 failed" in out
    assert (tmp_path / "dicomdir_series23_labels.nii.gz").is_file()
    assert main([*args, "--series", "all", "-o", str(tmp_path / "x.nii.gz")]) == 2
    assert "use --out DIR, not -o" in capsys.readouterr().err
    assert main([*args, "--series", "two", "--out", str(tmp_path)]) == 2
    assert "whole number or 'all'" in capsys.readouterr().err


def test_series_all_on_a_cluster_counts_attempts_per_series(tmp_path):
    pytest.importorskip("distributed")
    s = segment_files(DICOMDIR, tmp_path, auto=True, backend="classical", series="all",
                      workers=2, progress=False)  # fmt: skip
    assert s.counts == {"done": 24, "skipped": 0, "failed": 0}, s.lines()
    assert [r.attempts for r in s.results] == [1] * 24  # 24 jobs of one input: not retries
    assert not s.retried
    r6 = next(r for r in s.results if r.output.endswith("dicomdir_series6_labels.nii.gz"))
    assert r6.planes == 5


def test_series_all_is_refused_where_one_image_is_read(tmp_path):
    from napari_sam2.cli._common import UsageError, read_image

    with pytest.raises(UsageError, match="--series all is for several outputs"):
        read_image(tmp_path / "x.tif", "all")


def test_summary_lines_name_the_output_of_an_input_with_several_jobs():
    from napari_sam2.batch._results import FileResult, Summary

    s = Summary([
        FileResult("study", "out/study_labels.nii.gz", "skipped", "complete output exists"),
        FileResult("study", "out/study_series1_labels.nii.gz", "failed", "no pixel data"),
        FileResult("a.tif", "out/a_labels.tif", "failed", "corrupt"),
    ])  # fmt: skip
    assert s.lines()[:3] == [
        "skipped study -> out/study_labels.nii.gz: complete output exists",
        "FAILED  study -> out/study_series1_labels.nii.gz: no pixel data",
        "FAILED  a.tif: corrupt",
    ]
