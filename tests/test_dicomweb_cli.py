"""``napari-sam2 segment dicomweb://…`` against a private Orthanc: retrieve, segment with
the classical backend, send the SEG back with --stow; credentials never printed."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from _orthanc import PASSWORD, USER, start_orthanc
from napari_sam2.cli import main
from napari_sam2.io import dicomweb
from test_medical_dicom import write_series

AUTH = {"username": USER, "password": PASSWORD}


@pytest.fixture(scope="module")
def server_with_study(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("pacs_cli")
    server = start_orthanc(tmp / "orthanc")
    folder = tmp / "series"
    write_series(shared_data, folder)
    study = generate_uid()
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.save_as(path)
    server.upload(sorted(folder.iterdir()))
    series = str(pydicom.dcmread(next(folder.iterdir())).SeriesInstanceUID)
    yield server, study, series
    server.stop()


def test_segment_a_study_and_stow_the_seg_back(server_with_study, tmp_path, capsys):
    pytest.importorskip("highdicom")
    server, study, series = server_with_study
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    address = server.url.replace("http://", "dicomweb+http://") + f"/studies/{study}"
    out = tmp_path / "out"
    args = ["segment", address, "--points", "20,16", "--plane", "12", "--backend",
            "classical", "--user", USER, "--password-file", str(secret), "--stow",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr()
    assert PASSWORD not in printed.out + printed.err
    assert "sent" in printed.out
    (local,) = out.glob("*_labels.dcm")  # --out keeps the local SEG too
    (seg_series,) = dicomweb.search_series(server.url, study_uid=study, modality="SEG", **AUTH)
    assert seg_series["series_number"] == 9000 and seg_series["instances"] == 1
    client = dicomweb.make_client(server.url, **AUTH)
    (item,) = client.search_for_instances(study, seg_series["series_uid"])
    sent = client.retrieve_instance(study, seg_series["series_uid"], item["00080018"]["Value"][0])
    assert sent.ReferencedSeriesSequence[0].SeriesInstanceUID == series
    assert np.count_nonzero(sent.pixel_array) > 0
    np.testing.assert_array_equal(sent.pixel_array, pydicom.dcmread(local).pixel_array)
    # a second run sends a second SEG series, never over the first
    assert main([*args[:-3], "--no-progress"]) == 0
    numbers = sorted(
        s["series_number"]
        for s in dicomweb.search_series(server.url, study_uid=study, modality="SEG", **AUTH)
    )
    assert numbers == [9000, 9001]


def test_usage_errors_and_wrong_credentials(server_with_study, tmp_path, capsys, monkeypatch):
    server, study, _ = server_with_study
    assert main(["segment", "--dicomweb", server.url, "--auto"]) == 2
    assert "--study" in capsys.readouterr().err
    monkeypatch.setenv(dicomweb.PASSWORD_ENV, "wrong-password-42")
    args = ["segment", "--dicomweb", server.url, "--study", study, "--auto", "--user", USER]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "wrong-password-42" not in err
    monkeypatch.delenv(dicomweb.PASSWORD_ENV)
    assert main(args) == 2
    assert dicomweb.PASSWORD_ENV in capsys.readouterr().err
    assert main(["segment", "--auto"]) == 2
