"""The options and input handling the CLI subcommands share (``napari_sam2.cli._common``):
every command lists the shared flags with the same help, rejects the same bad values with the
same message and exit code 2, and reads images/labels/models the same way."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from napari_sam2.cli import _common as common
from napari_sam2.cli import main

DATA = Path(__file__).resolve().parent / "data"
NUCLEI = DATA / "nuclei2d_dsb2018_uint16.tif"
NUCLEI_GT = DATA / "nuclei2d_dsb2018_uint16_labels.tif"
ZCYX = DATA / "ovule_nuclei_membrane_zcyx_uint16.ome.tif"

# the minimal valid argv of each command, and the shared flags it must have
REQUIRED = {
    "segment": [str(NUCLEI), "--points", "10,10", "-o", "never.tif"],
    "evaluate": [str(NUCLEI), "--labels", str(NUCLEI_GT)],
    "finetune": [str(NUCLEI), "--labels", str(NUCLEI_GT), "--out", "never.pt"],
    "precompute": [str(NUCLEI), "--disk-cache", "never"],
}
MODEL_FLAGS = {
    "segment": ["--model", "--checkpoint", "--backend", "--device", "--precision", "--image-size"],
    "evaluate": ["--model", "--checkpoint", "--backend", "--device", "--precision", "--image-size"],
    "precompute": ["--model", "--checkpoint", "--backend", "--device", "--precision",
                   "--image-size"],
    "finetune": ["--model", "--checkpoint", "--device", "--image-size"],
    "demo": ["--model", "--checkpoint"],
}  # fmt: skip
IMAGE_FLAGS = {"segment": ["--contrast-limits", "--channel", "--series"],
               "precompute": ["--contrast-limits", "--channel", "--series"]}  # fmt: skip
THREE = ("evaluate", "finetune", "precompute")


def help_of(command, capsys) -> str:
    assert main([command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal width


def group(text: str, name: str) -> str:
    """The part of a help text under the ``name:`` heading (up to the next heading)."""
    m = re.search(rf"\b{name}: (.*?)(?= [a-z ]+: --|$)", text)
    assert m, f"no {name!r} group in: {text}"
    return m.group(1)


# --------------------------------------------------------------------------- --help
@pytest.mark.parametrize("command", sorted(MODEL_FLAGS))
def test_help_lists_the_shared_flags_in_their_groups(command, capsys):
    text = help_of(command, capsys)
    model = group(text, "model")
    for flag in MODEL_FLAGS[command]:
        assert f"{flag} " in model, (command, flag)
    for flag in {"--backend", "--precision", "--image-size"} - set(MODEL_FLAGS[command]):
        assert f"[{flag} " not in text, (command, flag)  # e.g. finetune trains SAM 2 only
    assert "SAM 2 size: tiny, small, base_plus, large" in model
    if "--image-size" in MODEL_FLAGS[command]:
        assert "SAM 2 input size, multiple of 32 (default 1024)" in model
    if "--device" in MODEL_FLAGS[command]:
        assert "--device DEVICE auto, cuda, mps or cpu" in model
    if command in IMAGE_FLAGS:
        image = group(text, "image")
        for flag in IMAGE_FLAGS[command]:
            assert f"{flag} " in image, (command, flag)
        assert "(default: stack percentiles)" in image and "TIFF (default 0)" in image


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_shared_defaults(command):
    from napari_sam2.cli import build_parser

    args = build_parser().parse_args([command, *REQUIRED[command]])
    expected = {"model": "tiny", "checkpoint": None, "device": "auto", "image_size": None}
    if command != "finetune":
        expected |= {"backend": "auto", "precision": "auto"}
    assert common.model_options(args) == expected
    if command in IMAGE_FLAGS:
        assert (args.contrast_limits, args.series) == (None, 0)


# ------------------------------------------------------------------ bad shared values
BAD = [
    ("--image-size", "abc", "argument --image-size: invalid int value: 'abc'", THREE),
    ("--backend", "nope", "argument --backend: invalid choice: 'nope'", ("evaluate", "precompute")),
    ("--precision", "fp8", "argument --precision: invalid choice: 'fp8'",
     ("evaluate", "precompute")),
    ("--series", "first", "argument --series: expected a whole number or 'all', got 'first'",
     ("precompute",)),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "value", "message", "commands"), BAD)
def test_bad_value_of_a_shared_flag_is_the_same_usage_error(flag, value, message, commands,
                                                            capsys, tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)  # nothing may be written, and surely not into the checkout
    for command in (*commands, "segment"):
        assert main([command, *REQUIRED[command], flag, value]) == 2, command
        err = capsys.readouterr().err
        assert f"napari-sam2 {command}: error: {message}" in err, (command, err)
        assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_labels_count_mismatch_is_found_before_any_work(tmp_path, capsys):
    msg = "1 image(s) but 2 labels file(s): give one --labels file per image, in the same order."
    for command in ("evaluate", "finetune"):
        argv = [command, str(NUCLEI), "--labels", "a.tif", "b.tif", "--out", str(tmp_path / "x")]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"napari-sam2 {command}: error: {msg}"
    assert not (tmp_path / "x").exists()


def test_missing_image_and_bad_plane_read_the_same_in_every_command(tmp_path, capsys):
    missing = tmp_path / "missing.tif"
    gt = str(NUCLEI_GT)
    argvs = {
        "evaluate": [str(missing), "--labels", gt, "--backend", "classical", "--out",
                     str(tmp_path / "e")],
        "finetune": [str(missing), "--labels", gt, "--out", str(tmp_path / "m.pt")],
        "precompute": [str(missing), "--disk-cache", str(tmp_path / "c"), "--backend",
                       "classical"],
    }  # fmt: skip
    for command, argv in argvs.items():
        assert main([command, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"napari-sam2 {command}: error: no such image file: {missing}", err
    for command in ("evaluate", "finetune"):
        argv = [command, str(NUCLEI), "--labels", gt, "--plane", "z3", "--out",
                str(tmp_path / "p.pt")]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"napari-sam2 {command}: error: bad --plane 'z3': expected integers " \
            "such as 12 or 3,12.", err  # fmt: skip
    assert not any((tmp_path / n).exists() for n in ("m.pt", "p.pt", "c", "e"))


# --------------------------------------------------------------------- the helpers
def test_image_kwargs_from_axes():
    rgb = np.zeros((8, 9, 3), np.uint8)
    assert common.image_kwargs(rgb, "YXS") == {"rgb": True, "channel_axis": None}
    rgba = np.zeros((8, 9, 4), np.uint8)
    assert common.image_kwargs(rgba, "YXS") == {"rgb": True, "channel_axis": None}
    assert common.image_kwargs(np.zeros((8, 9, 5)), "YXS") == {"rgb": False, "channel_axis": None}
    assert common.image_kwargs(np.zeros((4, 2, 8, 9)), "ZCYX") == {"rgb": False, "channel_axis": 1}
    assert common.image_kwargs(rgb, None) == {"rgb": False, "channel_axis": None}


def test_read_image_of_a_channel_stack():
    data, axes, scale, units = common.read_image(ZCYX)
    assert axes == "ZCYX" and data.ndim == 4 and data.dtype == np.uint16
    assert common.image_kwargs(data, axes)["channel_axis"] == 1 and data.shape[1] == 2
    assert len(scale) == len(units) == 4
    with pytest.raises(common.UsageError, match="no such image file"):
        common.read_image(DATA / "nope.tif")


def test_labelled_pairs_checks_counts_at_once_and_reads_lazily():
    ns = argparse.Namespace(images=["a.tif"], labels=["b.tif", "c.tif"])
    with pytest.raises(common.UsageError, match="1 image"):
        common.labelled_pairs(ns)  # before any file is opened
    ns = argparse.Namespace(images=[str(NUCLEI), "missing.tif"], labels=[str(NUCLEI_GT)] * 2)
    pairs = common.labelled_pairs(ns)  # nothing read yet: no error for missing.tif
    name, data, gt, kwargs = next(pairs)
    assert name == str(NUCLEI) and data.shape == gt.shape == (512, 512)
    assert data.dtype == np.uint16 and int(gt.max()) > 10
    assert kwargs == {"rgb": False, "channel_axis": None}
    with pytest.raises(common.UsageError, match="no such image file: missing.tif"):
        next(pairs)


def test_parsers_and_model_options():
    assert common.parse_channel("2") == 2 and common.parse_channel("-1") == -1
    assert common.parse_channel("composite") == "composite"
    assert common.parse_limits("10,200.5") == (10.0, 200.5)
    for bad in ("5,5", "1", "a,b"):
        with pytest.raises(common.UsageError, match="bad --contrast-limits"):
            common.parse_limits(bad)
    ns = argparse.Namespace(model="small", checkpoint="x.pt", device="cpu", image_size=512,
                            epochs=3)  # fmt: skip
    assert common.model_options(ns) == {"model": "small", "checkpoint": "x.pt",
                                        "device": "cpu", "image_size": 512}  # fmt: skip


def test_segmenter_from_args_uses_the_model_options():
    ns = argparse.Namespace(model="tiny", checkpoint=None, backend="classical", device="cpu",
                            precision="auto", image_size=None)  # fmt: skip
    seg = common.segmenter_from_args(ns)
    assert seg.describe()["backend"] == "classical"
    ns.backend = "nope"
    with pytest.raises(ValueError, match="nope"):
        common.segmenter_from_args(ns)


def test_stderr_progress_ends_its_line(capsys):
    with common.stderr_progress("encoded") as progress:
        progress(1, 3)
        progress(3, 3)
    assert capsys.readouterr().err == "\rencoded 1/3\rencoded 3/3\n"
    with pytest.raises(RuntimeError), common.stderr_progress("step") as progress:
        progress(2, 9)
        raise RuntimeError("boom")
    assert capsys.readouterr().err == "\rstep 2/9\n"  # an error message starts a new line
    with common.stderr_progress("step"):
        pass
    assert capsys.readouterr().err == ""
