"""``napari_sam2.batch`` on dask.distributed: a LocalCluster of 2 worker processes gives the
labels of the in-process run, survives a bad file and a killed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from napari_sam2.batch import segment_files  # noqa: E402
from test_batch import NUCLEI, make_crops, point_csv  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def kill_once(marker: str, job) -> None:
    """Runs on the worker: the first file to start kills its own worker process."""
    if not os.path.exists(marker):
        Path(marker).write_text(job.input)
        time.sleep(0.5)  # let the "started" event reach the scheduler
        os.kill(os.getpid(), signal.SIGKILL)


def labels_of(folder: Path) -> dict:
    return {p.name: tifffile.imread(p) for p in sorted(folder.glob("*_labels.tif"))}


def test_cluster_gives_the_in_process_labels(client, tmp_path, classical_segmenter):
    crops = make_crops(tmp_path / "in", ("a", "b", "c"))
    (tmp_path / "in" / "broken.tif").write_bytes(NUCLEI.read_bytes()[:5000])
    p = point_csv(tmp_path, crops)
    with open(p, "a") as fh:
        fh.write('broken.tif,,point,"5,5",\n')
    local = segment_files(tmp_path / "in", tmp_path / "local", prompts=p,
                          segmenter=classical_segmenter)  # fmt: skip
    dist = segment_files(tmp_path / "in", tmp_path / "dist", prompts=p, backend="classical",
                         client=client)  # fmt: skip
    assert [r.status for r in dist.results] == [r.status for r in local.results]
    status = {Path(r.input).name: r.status for r in dist.results}
    assert status == {"a.tif": "done", "b.tif": "done", "broken.tif": "failed", "c.tif": "done"}
    [bad] = dist.failed
    assert "broken.tif" in bad.reason
    assert dist.where.startswith("dask")
    workers = set(client.scheduler_info()["workers"])
    assert {r.worker for r in dist.done} <= workers
    a, b = labels_of(tmp_path / "local"), labels_of(tmp_path / "dist")
    assert list(a) == list(b) == ["a_labels.tif", "b_labels.tif", "c_labels.tif"]
    for name in a:
        assert a[name].any()
        np.testing.assert_array_equal(a[name], b[name])
    loads = [m for _, m in client.get_events("napari-sam2-batch") if "loaded" in m]
    assert 1 <= len(loads) <= 2  # the model is built once per worker, not per file
    again = segment_files(tmp_path / "in", tmp_path / "dist", prompts=p, backend="classical",
                          client=client)  # fmt: skip
    assert again.counts == {"done": 0, "skipped": 3, "failed": 1}


def test_killed_worker_is_retried(client, tmp_path):
    crops = make_crops(tmp_path / "in", ("a", "b"))
    p = point_csv(tmp_path, crops)
    marker = tmp_path / "killed.txt"
    s = segment_files(tmp_path / "in", tmp_path / "out", prompts=p, backend="classical",
                      client=client, on_task_start=partial(kill_once, str(marker)))  # fmt: skip
    assert marker.is_file()
    killed = marker.read_text()
    assert [r.status for r in s.results] == ["done", "done"], s.lines()
    [retried] = [r for r in s.results if r.input == killed]
    assert retried.attempts >= 2
    assert any(line.startswith("retried") for line in s.lines())
    for r in s.results:
        labels = tifffile.imread(r.output)
        assert labels.shape == (160, 160) and labels.max() == 1
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the worker


@pytest.mark.slow
def test_sam2_random_weights_same_labels_on_cluster(client, tmp_path, sam2_random_checkpoint):
    """The real SAM 2 architecture (random weights, image_size 256) in-process and on
    2 worker processes."""
    crops = make_crops(tmp_path / "in", ("a", "b"))
    p = point_csv(tmp_path, crops)
    opts = dict(prompts=p, backend="sam2", checkpoint=sam2_random_checkpoint, image_size=256,
                device="cpu")  # fmt: skip
    local = segment_files(tmp_path / "in", tmp_path / "local", **opts)
    dist = segment_files(tmp_path / "in", tmp_path / "dist", client=client, **opts)
    assert local.ok and dist.ok, local.lines() + dist.lines()
    a, b = labels_of(tmp_path / "local"), labels_of(tmp_path / "dist")
    assert list(a) == list(b) == ["a_labels.tif", "b_labels.tif"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.slow
def test_cli_workers_as_a_user_types_it(tmp_path):
    make_crops(tmp_path / "data", ("a", "b"))
    exe = Path(sys.executable).with_name("napari-sam2")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "napari_sam2.cli"]
    args = ["segment", "data/*.tif", "--points", "80,80", "--backend", "classical"]
    r = subprocess.run([*cmd, *args, "--out", "out/", "--workers", "2"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 done, 0 skipped, 0 failed (dask LocalCluster" in r.stdout
    assert "files" in r.stderr  # the progress bar
    r2 = subprocess.run([*cmd, *args, "--out", "local/"], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300)  # fmt: skip
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = labels_of(tmp_path / "out"), labels_of(tmp_path / "local")
    assert list(a) == list(b) == ["a_labels.tif", "b_labels.tif"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_scheduler_address(client, tmp_path):
    """--scheduler: an existing cluster, reached by its address."""
    from napari_sam2.batch._prompts import from_lists

    make_crops(tmp_path / "in", ("a",))
    s = segment_files(tmp_path / "in", tmp_path / "out", prompts=from_lists([(80, 80)]),
                      backend="classical", scheduler=client.scheduler.address)  # fmt: skip
    assert s.counts["done"] == 1 and s.where.startswith("dask scheduler tcp://")
    assert tifffile.imread(tmp_path / "out" / "a_labels.tif")[80, 80] == 1


def test_in_process_run_does_not_import_distributed(tmp_path):
    make_crops(tmp_path / "in", ("a",))
    code = (
        "import sys; from napari_sam2.batch import segment_files; "
        "from napari_sam2.batch._prompts import from_lists; "
        "s = segment_files('in', 'out', prompts=from_lists([(80, 80)]), backend='classical'); "
        "assert s.ok, s.lines(); assert 'distributed' not in sys.modules, 'imported'; print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_plane_chunks_on_the_cluster(client, tmp_path, classical_segmenter):
    """A stack split into plane ranges over 2 worker processes: the labels (and IDs) of the
    unchunked in-process run, one result for the file, the planes counted as chunks finish,
    no temporary file left."""
    from test_batch_planes import OVULE

    local = segment_files(OVULE, tmp_path / "local", auto=True, planes="4:16",
                          segmenter=classical_segmenter)  # fmt: skip
    events = []
    dist = segment_files(OVULE, tmp_path / "dist", auto=True, backend="classical", planes="4:16",
                         client=client, plane_chunks=4, progress=events.append)  # fmt: skip
    [a], [b] = local.results, dist.results
    assert b.status == "done" and b.notes == ["split into 4 plane ranges"], dist.lines()
    assert b.planes == 12 and b.objects == a.objects
    np.testing.assert_array_equal(tifffile.imread(a.output), tifffile.imread(b.output))
    planes = [e["count"] for e in events if e["event"] == "plane"]
    assert sorted(planes) == [3, 3, 3, 3]
    assert [e["planes_done"] for e in events if e["event"] == "file"] == [12]
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [Path(b.output).name]


def test_cluster_resumes_the_ranges_of_an_interrupted_run(
    client, tmp_path, classical_segmenter, monkeypatch
):
    """Ranges finished in-process before Ctrl-C are reused by the cluster run (the workers
    segment only the others): the labels of the unsplit run, and the summary says so."""
    from napari_sam2.batch import _chunks
    from test_batch_planes import OVULE

    local = segment_files(OVULE, tmp_path / "local", auto=True, segmenter=classical_segmenter)
    real = _chunks.segment_range

    def stop_in_range_2(chunk, seg, on_plane=None):
        if chunk.index == 2:
            raise KeyboardInterrupt
        return real(chunk, seg, on_plane)

    monkeypatch.setattr(_chunks, "segment_range", stop_in_range_2)
    with pytest.raises(KeyboardInterrupt):
        segment_files(OVULE, tmp_path / "o", auto=True, backend="classical", plane_chunks=4)
    monkeypatch.undo()
    dist = segment_files(OVULE, tmp_path / "o", auto=True, backend="classical",
                         client=client, plane_chunks=4)  # fmt: skip
    [a], [b] = local.results, dist.results
    assert b.status == "done" and b.notes[1:] == ["2 of 4 plane ranges reused"], dist.lines()
    assert b.objects == a.objects
    np.testing.assert_array_equal(tifffile.imread(a.output), tifffile.imread(b.output))
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [Path(b.output).name]


@pytest.mark.slow
def test_killed_worker_in_a_plane_chunk(client, tmp_path, classical_segmenter):
    from test_batch_planes import OVULE

    local = segment_files(OVULE, tmp_path / "local", auto=True, segmenter=classical_segmenter)
    [a] = local.results
    marker = tmp_path / "killed.txt"
    killed = segment_files(OVULE, tmp_path / "killed", auto=True, backend="classical",
                           client=client, plane_chunks=2,
                           on_task_start=partial(kill_once, str(marker)))  # fmt: skip
    assert marker.is_file()
    [k] = killed.results
    assert k.status == "done" and k.attempts >= 2, killed.lines()
    np.testing.assert_array_equal(tifffile.imread(a.output), tifffile.imread(k.output))
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == [Path(k.output).name]
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the worker
