"""The ``napari-sam2`` command line: in-process through ``main([...])`` and as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.cli import main
from napari_sam2.cli._common import parse_coords, parse_plane

DATA = Path(__file__).resolve().parent / "data"
NUCLEI = DATA / "nuclei2d_dsb2018_uint16.tif"
NUCLEI_GT = DATA / "nuclei2d_dsb2018_uint16_labels.tif"
NUCLEI_3D = DATA / "nuclei3d_ovule_zyx_uint8.tif"
NUCLEI_3D_GT = DATA / "nuclei3d_ovule_zyx_uint8_labels.tif"


def cli_exe() -> list[str]:
    exe = Path(sys.executable).with_name("napari-sam2")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "napari_sam2.cli"]


def run_cli(*args, env=None, timeout=120):
    env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*cli_exe(), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def read_labels(path):
    return np.asarray(tifffile.imread(path))


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def centre(mask):
    """An interior pixel of ``mask`` (the maximum of its distance transform)."""
    from scipy import ndimage as ndi

    d = ndi.distance_transform_edt(mask)
    return np.unravel_index(int(d.argmax()), d.shape)


def largest_objects(gt, n):
    ids, counts = np.unique(gt[gt > 0], return_counts=True)
    return ids[np.argsort(-counts, kind="stable")[:n]]


@pytest.fixture
def no_ckpt_env(tmp_path, monkeypatch):
    """No SAM 2 checkpoint reachable: empty search folders, no HF cache."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("NAPARI_SAM2_CHECKPOINT_DIR", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    return {
        "HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf"),
        "NAPARI_SAM2_CHECKPOINT_DIR": str(tmp_path / "none"),
    }


# ------------------------------------------------------------------------- parsing
def test_parse_coords():
    assert parse_coords("1,2; 3.5,4", 2, "--points") == [(1.0, 2.0), (3.5, 4.0)]
    assert parse_coords("1,2,3,4;", 4, "--boxes") == [(1.0, 2.0, 3.0, 4.0)]
    assert parse_coords(None, 2, "--points") == []
    assert parse_plane("3,12") == (3, 12)


@pytest.mark.parametrize("bad", ["1", "1,2,3", "a,b", "1,,2"])
def test_bad_points_exit_2(bad, tmp_path, capsys):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, np.zeros((16, 16), np.uint8))
    rc = main(["segment", str(img), "--points", bad, "-o", str(tmp_path / "o.tif")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--points" in err and "Traceback" not in err


# --------------------------------------------------------------------- help / info
def test_help_in_process(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "info", "segment"):
        assert cmd in out
    assert main(["segment", "--help"]) == 0
    assert "--boxes" in capsys.readouterr().out


def test_no_command_and_unknown_option():
    assert main([]) == 2
    assert main(["segment"]) == 2  # missing IMAGE and -o: argparse usage error
    assert main(["demo", "--sample", "nope"]) == 2


def test_help_subprocess():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    assert "segment" in r.stdout and "demo" in r.stdout


def test_info_subprocess(no_ckpt_env):
    r = run_cli("info", env=no_ckpt_env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for word in (
        "torch",
        "sam2",
        "device:",
        "precision:",
        "sam2._C:",
        "NAPARI_SAM2_CHECKPOINT_DIR",
    ):
        assert word in out
    for size in ("tiny", "small", "base_plus", "large"):
        assert size in out
    assert "classical backend" in out  # the fallback notice when nothing is found


def test_info_lists_found_checkpoint(no_ckpt_env, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "sam2.1_hiera_small.pt").write_bytes(b"x")
    monkeypatch.setenv("NAPARI_SAM2_CHECKPOINT_DIR", str(folder))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert str(folder / "sam2.1_hiera_small.pt") in out
    assert "classical backend" not in out


def test_info_names_cpu_bf16_calibrations(no_ckpt_env, tmp_path, capsys, monkeypatch):
    # on a CPU with native bf16, info says how auto picks bf16 and how many verdicts exist
    from napari_sam2.engine.runtime import devices

    (tmp_path / "abc.json").write_text("{}")
    monkeypatch.setenv("NAPARI_SAM2_PRECISION_DIR", str(tmp_path))
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(devices, "resolve_device", lambda d: __import__("torch").device("cpu"))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "native bf16" in out and f"1 verdict(s) in {tmp_path}" in out


# -------------------------------------------------------------------------- segment
def test_segment_click_labels_the_nucleus(tmp_path, capsys):
    gt = tifffile.imread(NUCLEI_GT)
    nucleus = largest_objects(gt, 1)[0]
    r, c = centre(gt == nucleus)
    out = tmp_path / "labels.tif"
    rc = main(
        ["segment", str(NUCLEI), "--points", f"{r},{c}", "--backend", "classical", "-o", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    assert "classical" in capsys.readouterr().out
    labels = read_labels(out)
    assert labels.shape == gt.shape
    assert set(np.unique(labels)) == {0, 1}
    assert labels[r, c] == 1
    assert iou(labels == 1, gt == nucleus) >= 0.3


def test_segment_boxes_give_distinct_ids_and_provenance(tmp_path, capsys):
    gt = tifffile.imread(NUCLEI_GT)
    from scipy import ndimage as ndi

    boxes, ids = [], largest_objects(gt, 2)
    for i in ids:
        sl = ndi.find_objects((gt == i).astype(np.int32))[0]
        boxes.append(f"{sl[0].start - 2},{sl[1].start - 2},{sl[0].stop + 1},{sl[1].stop + 1}")
    out = tmp_path / "sub" / "boxes.tif"
    rc = main(["segment", str(NUCLEI), "--boxes", ";".join(boxes), "--backend", "classical",
               "--contrast-limits", "0,200", "-o", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    labels = read_labels(out)
    assert set(np.unique(labels)) == {0, 1, 2}
    for new_id, gt_id in zip((1, 2), ids, strict=True):
        assert iou(labels == new_id, gt == gt_id) >= 0.5
    try:
        from napari_sam2.io import load_labels
    except ImportError:
        return
    _, info = load_labels(out)
    prov = info["provenance"]
    assert prov["backend"] == "classical"
    assert set(prov["objects"]) == {1, 2}
    assert prov["normalization"]


def test_segment_plane_of_a_stack(tmp_path):
    gt = tifffile.imread(NUCLEI_3D_GT)
    z = gt.shape[0] // 2
    nucleus = largest_objects(gt[z], 1)[0]
    r, c = centre(gt[z] == nucleus)
    out = tmp_path / "z.tif"
    args = ["segment", str(NUCLEI_3D), "--points", f"{r},{c}", "--backend", "classical"]
    assert main([*args, "-o", str(out)]) == 2  # a stack needs --plane
    assert main([*args, "--plane", str(z), "-o", str(out)]) == 0
    labels = read_labels(out)
    assert labels.shape == gt.shape
    assert labels[z, r, c] == 1
    assert not np.delete(labels, z, axis=0).any()  # only plane z is written


def test_segment_sam2_random_checkpoint(tmp_path, capsys, sam2_random_checkpoint):
    """The real SAM 2 architecture through the real checkpoint path (random weights)."""
    ckpt = sam2_random_checkpoint  # conftest: SAM 2.1 tiny, image_size 256
    img = tmp_path / "img.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(img, rng.integers(0, 4000, (96, 128), dtype=np.uint16))
    out = tmp_path / "o.tif"
    rc = main(["segment", str(img), "--boxes", "10,10,60,80", "--backend", "sam2",
               "--checkpoint", str(ckpt), "--image-size", "256", "--device", "cpu",
               "-o", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "sam2" in capsys.readouterr().out
    labels = read_labels(out)
    assert labels.shape == (96, 128)
    assert labels.max() <= 1


# ---------------------------------------------------------------------- error paths
def test_missing_file_exit_2(tmp_path, capsys):
    rc = main(["segment", str(tmp_path / "nope.tif"), "--points", "1,1", "-o", "x.tif"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.tif" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_point_outside_exit_2(tmp_path, capsys):
    out = tmp_path / "o.tif"
    rc = main(["segment", str(NUCLEI), "--points", "900,5", "--backend", "classical",
               "-o", str(out)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "outside" in err and "Traceback" not in err
    assert not out.exists()


def test_output_not_a_tiff_name_exit_2(tmp_path, capsys):
    """``-o labels.png`` used to write TIFF bytes under a .png name."""
    out = tmp_path / "labels.png"
    rc = main(["segment", str(NUCLEI), "--points", "337,166", "--backend", "classical",
               "-o", str(out)])  # fmt: skip
    assert rc == 2
    assert ".tif" in capsys.readouterr().err
    assert not out.exists()


def test_not_a_tiff_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"definitely not a tiff")
    rc = main(["segment", str(bad), "--points", "1,1", "-o", str(tmp_path / "o.tif")])
    assert rc == 2
    assert "Traceback" not in capsys.readouterr().err


def test_no_prompt_exit_2(tmp_path, capsys):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, np.zeros((16, 16), np.uint8))
    assert main(["segment", str(img), "-o", str(tmp_path / "o.tif")]) == 2
    assert "--points" in capsys.readouterr().err


def test_sam2_without_checkpoint_exit_2(no_ckpt_env, tmp_path, capsys):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, np.zeros((16, 16), np.uint8))
    rc = main(["segment", str(img), "--points", "5,5", "--backend", "sam2", "-o", "o.tif"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "sam2.1_hiera_tiny.pt" in err  # says which file is expected
    assert "Traceback" not in err


def test_segment_subprocess_error_is_one_line(tmp_path):
    r = run_cli("segment", str(tmp_path / "missing.tif"), "--points", "1,1", "-o", "o.tif")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "missing.tif" in r.stderr


# ----------------------------------------------------------------------------- demo
def test_demo_screenshot(tmp_path, no_ckpt_env):
    pytest.importorskip("napari")
    try:
        import napari_sam2.widget  # noqa: F401
    except ImportError:
        pytest.skip("the dock widget is not available")
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        pytest.skip("needs a display (run under xvfb-run)")
    png = tmp_path / "demo.png"
    r = run_cli("demo", "--sample", "nuclei_2d", "--screenshot", str(png), "--wait", "1",
                env={**no_ckpt_env, "QT_API": "pyqt6"}, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert png.is_file() and png.stat().st_size > 10_000


def test_demo_bad_checkpoint_exit_2(tmp_path, capsys):
    pytest.importorskip("napari")
    try:
        import napari_sam2.widget  # noqa: F401
    except ImportError:
        pytest.skip("the dock widget is not available")
    rc = main(["demo", "--checkpoint", str(tmp_path / "nope.pt"), "--screenshot", "x.png"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and "Traceback" not in err


def test_readme_example_runs(no_ckpt_env, tmp_path):
    """The README's scripted example runs as written (classical backend without weights)."""
    import re

    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert blocks, "README has no python example"
    r = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **no_ckpt_env},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[1, 2] [0 1 2]" in r.stdout
    assert (tmp_path / "nuclei_labels.tif").is_file()
    # the classical-backend notice reaches stderr once (one log record, no second channel)
    from napari_sam2.engine.backends.factory import CLASSICAL_NOTICE

    first_line = CLASSICAL_NOTICE.split(":")[0]
    assert r.stderr.count(first_line) == 1, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count(first_line) == 1  # the example prints no second copy
    assert "classical" in r.stdout


def test_segment_picks_a_series(tmp_path, capsys):
    path = tmp_path / "two.tif"
    a = np.zeros((40, 50), np.uint16)
    a[5:15, 5:15] = 1000
    b = np.zeros((30, 60), np.uint16)
    b[10:25, 30:50] = 1000
    with tifffile.TiffWriter(path) as tw:
        tw.write(a)
        tw.write(b)
    out = tmp_path / "labels.tif"
    args = ["segment", str(path), "--points", "15,40", "--backend", "classical", "-o", str(out)]
    assert main([*args, "--series", "1"]) == 0, capsys.readouterr().err
    labels = read_labels(out)
    assert labels.shape == (30, 60)
    assert (labels[10:25, 30:50] == 1).all() and not labels[:, :25].any()
    assert main([*args, "--series", "2"]) == 2
    err = capsys.readouterr().err
    assert "series" in err and "Traceback" not in err
