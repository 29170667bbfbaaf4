"""The code examples of README.md and docs/**/*.md run as written.

Every fenced ```python block is executed, and every ``napari-sam2 ...`` line of a ```bash /
```sh / ```console block is parsed with the real command-line parser (a documented flag that
does not exist fails); blocks marked ``run`` are executed for real. The flags listed in the
synopsis blocks of docs/cli.md must exist too, and every ``napari_sam2.x.y`` named in the
text must import. docs/contributing.md says the same for writers of docs.

How a block runs
----------------
In a fresh temporary folder (the current directory) holding small copies of the files the
docs name (``nuclei.tif``, ``stack.tif``, ``data/*.tif``, ``prompts.csv``, ``cell.ome.tif``,
``sub-01_T1w.nii.gz`` ... see ``_make_files``), with ``HOME`` in that folder and no SAM 2
checkpoint anywhere, so ``backend="auto"`` runs the classical backend exactly as on a fresh
machine. A block that names ``sam2.1_hiera_tiny.pt`` finds a SAM 2.1 tiny checkpoint of that
name with random weights (tests/conftest.py) in the folder.

Markers (HTML comments, invisible on the rendered page) directly before a block, one
directive per comment, blank lines allowed in between:

- ``<!-- docs-test: skip (reason) -->``: not run; the reason is required (needs a GPU, real
  weights, a cluster, a running napari window, ...). A skipped bash block is still parsed.
- ``<!-- docs-test: continue -->``: runs in the namespace of the previous python block of
  the same page (a page that builds on its earlier example).
- ``<!-- docs-test: setup`` + code + ``-->``: runs first, hidden; for the user's own data the
  example assumes (``image``, ``labels``, ...). Keep it short and prefer runnable examples.
- ``<!-- docs-test: check`` + code + ``-->``: runs after the block, with its names; asserts
  what the page claims (IDs, shapes, printed values).
- ``<!-- docs-test: viewer -->``: ``viewer`` is a headless napari viewer (the napari console).
- ``<!-- docs-test: slow -->``: a heavy block (real SAM 2 architecture, many encodes): marked
  ``pytest.mark.slow`` so it runs only with ``-m ""``.
- ``<!-- docs-test: run -->`` (bash blocks): each ``napari-sam2`` line is run through
  ``napari_sam2.cli.main``, in order, in one folder, and must exit with 0; lines that start
  a dask cluster (``--workers``, ``--scheduler``) are only parsed.

Code is shown as in a terminal: ``.venv/bin/napari-sam2`` counts as ``napari-sam2``, ``\\``
continues a line, ``# ...`` is a comment.
"""

from __future__ import annotations

import gzip
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*$")
KNOWN = {"skip", "continue", "setup", "check", "viewer", "slow", "run"}


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marks: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"


def _blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page with the docs-test directives just before them."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, marks, i = [], {}, 0
    while i < len(lines):
        text = lines[i]
        m = DIRECTIVE.match(text)
        if m:
            name, rest = m.group(1), m.group(2)
            assert name in KNOWN, f"{page.name}:{i + 1}: unknown docs-test directive {name!r}"
            body = []
            if rest.endswith("-->"):
                rest = rest[:-3].strip()
            else:
                i += 1
                while lines[i].strip() != "-->":
                    body.append(lines[i])
                    i += 1
            if name == "skip":
                assert rest, f"{page.name}:{i + 1}: docs-test: skip needs a (reason)"
            marks[name] = "\n".join(body) if name in ("setup", "check") else (rest or True)
        elif FENCE.match(text):
            lang, start, body = FENCE.match(text).group(1), i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(page, start, lang, "\n".join(body) + "\n", marks))
            marks = {}
        elif text.strip():
            assert not marks, f"{page.name}:{i + 1}: docs-test directive not followed by a block"
        i += 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in _blocks(page)]


def _python_chains() -> list[list[Block]]:
    """Python blocks grouped with the ``continue`` blocks that follow them."""
    chains: list[list[Block]] = []
    for b in ALL_BLOCKS:
        if b.lang != "python":
            continue
        if b.marks.get("continue"):
            assert chains and chains[-1][0].page == b.page, f"{b.where}: nothing to continue"
            chains[-1].append(b)
        else:
            chains.append([b])
    return chains


def _param(chain: list[Block]):
    marks = [pytest.mark.slow] if any(b.marks.get("slow") for b in chain) else []
    return pytest.param(chain, id=chain[0].where, marks=marks)


# ----------------------------------------------------------------------------- the files


def _write_pyramid(path: Path) -> None:
    """A 2-channel OME-TIFF pyramid above the reader's multiscale size (3 levels)."""
    import tifffile

    yy, xx = np.mgrid[0:2304, 0:2560]
    base = ((yy // 7 + xx // 5) % 4000).astype(np.uint16)
    data = np.stack([base, base * 2])
    meta = {"axes": "CYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
    meta["Channel"] = {"Name": ["DAPI", "GFP"]}
    opts = {"tile": (256, 256), "compression": "zlib"}
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, subifds=2, metadata=meta, **opts)
        for f in (2, 4):
            tw.write(data[:, ::f, ::f], subfiletype=1, **opts)


def _write_plate(path: Path, names=("well A1", "well B2", "Macro")) -> None:
    """An OME-TIFF with several images (series); a side image named like a slide macro."""
    import tifffile

    rng = np.random.default_rng(7)
    with tifffile.TiffWriter(path) as tw:
        for k, name in enumerate(names):
            image = rng.integers(0, 255, (3 + k, 32, 40), dtype=np.uint8)
            tw.write(image, photometric="minisblack", metadata={"axes": "ZYX", "Name": name})


def _make_files(work: Path) -> None:
    """Small real files under the names the docs use."""
    import tifffile

    copies = {
        "nuclei2d_dsb2018_uint16.tif": "nuclei2d_dsb2018_uint16.tif",
        "nuclei2d_dsb2018_uint16_labels.tif": "nuclei2d_dsb2018_uint16_labels.tif",
        "nuclei3d_ovule_zyx_uint8.tif": "nuclei3d_ovule_zyx_uint8.tif",
        "nuclei.tif": "nuclei2d_dsb2018_uint16.tif",
        "cells.tif": "bacteria_phase_2d_uint8.tif",
        "a.tif": "nuclei2d_dsb2018_uint16.tif",
        "a_labels.tif": "nuclei2d_dsb2018_uint16_labels.tif",
        "b.tif": "bacteria_phase_2d_uint8.tif",
        "b_labels.tif": "bacteria_phase_2d_uint8_labels.tif",
        "stack.tif": "nuclei3d_ovule_zyx_uint8.tif",
        "stack_labels.tif": "nuclei3d_ovule_zyx_uint8_labels.tif",
        "big_stack.tif": "ovule_membrane_zyx_uint8.tif",
        "huge_stack.ome.tif": "em_fibsem_medulla_zyx_uint8.ome.tif",
        "small.tif": "bacteria_phase_2d_uint8.tif",
        "cell.ome.tif": "ovule_nuclei_membrane_zcyx_uint16.ome.tif",
        "data/a.tif": "nuclei2d_dsb2018_uint16.tif",
        "data/b.tif": "bacteria_phase_2d_uint8.tif",
        "data/deep/cell.ome.tif": "ovule_nuclei_membrane_zcyx_uint16.ome.tif",
        "CT_export/CT_small.dcm": "medical/CT_small.dcm",
    }
    for name, src in copies.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / src, work / name)
    with open(DATA / "medical" / "anatomical.nii", "rb") as f:
        (work / "sub-01_T1w.nii.gz").write_bytes(gzip.compress(f.read()))
    (work / "prompts.csv").write_text(
        "file,plane,kind,coordinates,label\n"
        'a.tif,,point,"337,166",\n'
        'a.tif,,box,"297,444,327,486",\n'
        'b.tif,,box,"10,10,60,80",\n'
        'stack.tif,50,point,"40,40",3\n'
        'cell.ome.tif,2,point,"50,50",\n',
        encoding="utf-8",
    )
    movie = tifffile.imread(DATA / "nuclei3d_ovule_zyx_uint8.tif")[40:64].reshape(3, 8, 100, 100)
    (work / "movies").mkdir()
    tifffile.imwrite(
        work / "movies" / "nuclei_tzyx.tif", movie, imagej=True, metadata={"axes": "TZYX"}
    )
    _write_pyramid(work / "slide.ome.tif")
    _write_plate(work / "plate.ome.tif", names=("well A1", "well B2"))
    _write_plate(work / "scan.ome.tif", names=("tissue", "label image", "Macro"))


@pytest.fixture(scope="session")
def docs_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("docs_files")
    _make_files(folder)
    return folder


@pytest.fixture
def docs_dir(no_checkpoints, docs_files) -> Path:
    """The current directory of an example: the docs' files, no checkpoint anywhere."""
    work = Path.cwd()
    shutil.copytree(docs_files, work, dirs_exist_ok=True)
    return work


def _needs_checkpoint(text: str, work: Path, request) -> None:
    if "sam2.1_hiera_tiny.pt" in text and not (work / "sam2.1_hiera_tiny.pt").exists():
        src = request.getfixturevalue("sam2_random_checkpoint")
        (work / "sam2.1_hiera_tiny.pt").symlink_to(src)


# ----------------------------------------------------------------------------- python


@pytest.mark.parametrize("chain", [_param(c) for c in _python_chains()])
def test_python_example(chain: list[Block], docs_dir, request, monkeypatch):
    for b in chain:
        if b.marks.get("skip"):
            pytest.skip(f"{b.where}: {b.marks['skip']}")
    namespace: dict = {"__name__": "__docs__"}
    for b in chain:
        _needs_checkpoint(b.code + b.marks.get("setup", ""), docs_dir, request)
        if b.marks.get("viewer") and "viewer" not in namespace:
            namespace["viewer"] = request.getfixturevalue("make_napari_viewer")()
            # as the dock widget does on creation: importing triton (torchvision) after
            # Mesa's LLVM OpenGL is loaded segfaults, here and in later tests of the process
            from napari_sam2.engine.runtime.llvm_guard import avoid_llvm_clash

            avoid_llvm_clash()
        for part, code in (
            ("setup", b.marks.get("setup")),
            ("", b.code),
            ("check", b.marks.get("check")),
        ):
            if code:
                exec(compile(code, f"{b.where} {part}".strip(), "exec"), namespace)


# ----------------------------------------------------------------------------- command line


def _cli_lines(block: Block) -> list[tuple[int, list[str]]]:
    """(line, argv) of every ``napari-sam2`` command of a shell block."""
    out, joined, first = [], "", None
    for k, raw in enumerate(block.code.splitlines()):
        line = raw.strip()
        if first is None:
            first = block.line + 1 + k
        if line.endswith("\\"):
            joined += line[:-1] + " "
            continue
        joined += line
        for cmd in joined.removeprefix("$ ").split(" && "):
            cmd = cmd.strip()
            for prefix in ("xvfb-run -a ", ".venv/bin/"):
                cmd = cmd.removeprefix(prefix)
            if cmd.startswith("napari-sam2 "):
                out.append((first, shlex.split(cmd, comments=True)[1:]))
        joined, first = "", None
    return out


CLI_LINES = [
    pytest.param(b, argv, id=f"{b.page.relative_to(ROOT).as_posix()}:{line}")
    for b in ALL_BLOCKS
    if b.lang in SHELL_LANGS
    for line, argv in _cli_lines(b)
]


def test_some_cli_lines_are_found():
    assert len(CLI_LINES) > 20


@pytest.mark.parametrize(("block", "argv"), CLI_LINES)
def test_cli_example_parses(block: Block, argv: list[str], capsys):
    from napari_sam2.cli import build_parser

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        err = capsys.readouterr()
        assert e.code == 0, f"{block.where}: napari-sam2 {shlex.join(argv)}\n{err.err}"
        return
    assert args.command, f"{block.where}: no command"


def _inline_commands() -> list:
    """``napari-sam2 ... --flag`` in inline code of the pages' text (no placeholders)."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")  # blocks blanked, their lines kept
        text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
        for m in re.finditer(r"`(?:xvfb-run -a )?(?:\.venv/bin/)?napari-sam2 ([^`]+)`", text):
            cmd = " ".join(m.group(1).split())
            if " -" in cmd and not any(c in cmd for c in ("...", "…", "|")):
                where = (
                    f"{page.relative_to(ROOT).as_posix()}:{text[: m.start()].count(chr(10)) + 1}"
                )
                out.append(pytest.param(cmd, id=where))
    return out


@pytest.mark.parametrize("cmd", _inline_commands())
def test_inline_cli_example_parses(cmd: str, capsys):
    from napari_sam2.cli import build_parser

    try:
        args = build_parser().parse_args(shlex.split(cmd))
    except SystemExit:
        pytest.fail(f"napari-sam2 {cmd}\n{capsys.readouterr().err}")
    assert args.command


RUN_BLOCKS = [
    pytest.param(b, id=b.where, marks=[pytest.mark.slow] if b.marks.get("slow") else [])
    for b in ALL_BLOCKS
    if b.lang in SHELL_LANGS and b.marks.get("run")
]


def test_some_cli_examples_run():
    assert len(RUN_BLOCKS) >= 3


@pytest.mark.parametrize("block", RUN_BLOCKS)
def test_cli_example_runs(block: Block, docs_dir, request, capsys):
    """The block's commands, one after the other in one folder (cluster ones only parsed)."""
    from napari_sam2.cli import main

    _needs_checkpoint(block.code, docs_dir, request)
    for _, argv in _cli_lines(block):
        if {"--workers", "--scheduler"} & set(argv):
            continue
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 0, f"{block.where}: napari-sam2 {shlex.join(argv)} -> {rc}\n{err}"
        for flag in ("-o", "--out"):  # what the command says it writes is there
            if flag in argv:
                out = docs_dir / argv[argv.index(flag) + 1]
                assert out.is_file() or list(out.rglob("*_labels.*")), f"{block.where}: {out}"


def _synopses() -> list[tuple[str, str, set[str]]]:
    """(where, command, flags) of the plain synopsis blocks of docs/cli.md."""
    out = []
    for b in _blocks(ROOT / "docs" / "cli.md"):
        if b.lang or not b.code.startswith("napari-sam2"):
            continue
        for chunk in re.split(r"\n\s*\n", b.code.strip()):
            words = chunk.split()
            command = words[1] if not words[1].startswith("[") else ""
            flags = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", chunk))
            out.append((b.where, command, flags))
    return out


def _options(command: str) -> set[str]:
    import argparse

    from napari_sam2.cli import build_parser

    parser = build_parser()
    if command:
        [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[command]
    return {o for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize(("where", "command", "flags"), _synopses())
def test_cli_synopsis_flags_exist(where, command, flags):
    missing = sorted(flags - _options(command))
    assert not missing, f"{where}: napari-sam2 {command} has no {missing}"


def test_every_cli_option_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in ("", "demo", "segment", "evaluate", "precompute", "convert", "finetune",
                    "serve", "calibrate"):  # fmt: skip
        undocumented = sorted(o for o in _options(command) - {"-h", "--help"} if o not in text)
        assert not undocumented, f"docs/cli.md does not mention {command} {undocumented}"


def _dotted_names() -> list:
    names = {}
    for page in PAGES:
        for m in re.finditer(r"\bnapari_sam2(?:\.\w+)+", page.read_text(encoding="utf-8")):
            names.setdefault(m.group(0), page.relative_to(ROOT).as_posix())
    return [pytest.param(name, id=f"{where}:{name}") for name, where in sorted(names.items())]


@pytest.mark.parametrize("name", _dotted_names())
def test_documented_dotted_name_exists(name: str):
    """``napari_sam2.engine.tiling.predict_tiled`` and the like, named in the text, exist."""
    import importlib

    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            assert hasattr(obj, attr), f"{name}: {obj!r} has no {attr!r}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"{name} cannot be imported")


def _synopsis_defaults() -> list:
    """``[--clicks 5]``: a flag shown with a number in a cli.md synopsis, and that number."""
    out = []
    for where, command, _ in _synopses():
        block = next(b for b in _blocks(ROOT / "docs" / "cli.md") if b.where == where)
        for flag, value in re.findall(r"\[(--[\w-]+) (-?\d[\d.]*(?:e-?\d+)?)\]", block.code):
            if flag == "--plane":  # an example index, not a default
                continue
            out.append(pytest.param(command, flag, value, id=f"{where}:{command}{flag}"))
    return list({p.id: p for p in out}.values())


@pytest.mark.parametrize(("command", "flag", "value"), _synopsis_defaults())
def test_cli_synopsis_default_is_the_parser_default(command, flag, value):
    from napari_sam2.cli import build_parser

    args = build_parser().parse_args([command, *_REQUIRED[command]])
    default = getattr(args, flag.lstrip("-").replace("-", "_"))
    assert default is not None and float(default) == float(value), (command, flag, default)


_REQUIRED = {
    "demo": [],
    "segment": ["x.tif"],
    "evaluate": ["x.tif", "--labels", "y.tif"],
    "precompute": ["x.tif", "--disk-cache", "d"],
    "convert": ["a", "b"],
    "finetune": ["x.tif", "--labels", "y.tif", "--out", "m.pt"],
    "serve": [],
    "calibrate": [],
}
