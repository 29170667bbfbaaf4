"""The ``napari-sam2`` console script: ``demo``, ``info``, ``segment``, ``evaluate``, ``precompute``,
``convert``, ``finetune``, ``serve``, ``calibrate``.

Exit codes: 0 success, 1 unexpected failure, 2 usage error or bad input (with a one-line
message on stderr, no traceback; ``--debug`` shows the traceback).

Examples
--------
::

    napari-sam2 demo --sample nuclei_3d
    napari-sam2 info
    napari-sam2 segment cells.tif --points "120,85;40,200" -o cells_labels.tif
    napari-sam2 segment stack.tif --plane 12 --boxes "10,10,60,80;70,5,120,50" -o labels.tif
    napari-sam2 evaluate cells.tif --labels cells_labels.tif --clicks 5 --out eval/
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import app, calibrate, convert, evaluate, finetune, precompute, segment, serve
from ._common import UsageError

__all__ = ["COMMANDS", "PROG", "build_parser", "main"]

PROG = "napari-sam2"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="SAM 2 segmentation for napari: open the demo, check the set-up, or "
        "segment TIFF, NIfTI and DICOM images from the command line.",
    )
    p.add_argument(
        "--version", action="version", version=f"%(prog)s {app.dist_version('napari-sam2')}"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(
        dest="command", metavar="{demo,info,segment,evaluate,precompute,convert,finetune,serve,calibrate}"
    )
    app.add_parsers(sub)  # demo, info
    segment.add_parser(sub)  # one image or many files, --auto, --propagate: docs/batch.md
    evaluate.add_parser(sub)  # simulated-click evaluation: docs/evaluation.md
    precompute.add_parser(sub)  # disk embedding cache: docs/performance.md
    convert.add_parser(sub)  # .pt <-> transformers folder: docs/models.md
    finetune.add_parser(sub)  # train the mask decoder: docs/finetuning.md
    serve.add_parser(sub)  # encode for remote clients: docs/server.md
    calibrate.add_parser(sub)  # fp32 vs bf16 verdict: docs/performance.md
    return p


COMMANDS = {
    "demo": app.cmd_demo,
    "info": app.cmd_info,
    "segment": segment.cmd_segment,
    "evaluate": evaluate.cmd_evaluate,
    "precompute": precompute.cmd_precompute,
    "convert": convert.cmd_convert,
    "finetune": finetune.cmd_finetune,
    "serve": serve.cmd_serve,
    "calibrate": calibrate.cmd_calibrate,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (``--help`` returns 0)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version (0) or usage error (2)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command != "demo":  # napari reports warnings itself
        logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    from ..engine.errors import NapariSam2Error

    try:
        return COMMANDS[args.command](args)
    except (UsageError, NapariSam2Error, OSError, ValueError) as e:
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{PROG} {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
