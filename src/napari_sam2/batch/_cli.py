"""The batch side of ``napari-sam2 segment``: its extra options and its run."""

from __future__ import annotations

import logging
import sys

from .._cli_common import (
    UsageError,
    model_options,
    parse_channel,
    parse_coords,
    parse_limits,
    segmenter_from_args,
)

BATCH_ONLY = ("out_dir", "prompts", "auto", "propagate", "overwrite", "summary", "scheduler",
              "workers", "dicom_seg", "plane_chunks")  # fmt: skip
EXIT_SOME_FAILED = 3


def add_arguments(parser) -> None:
    """Add the batch options to the ``segment`` sub-parser."""
    g = parser.add_argument_group(
        "several files (batch; see docs/batch.md)",
        "Without -o, each input gets <stem>_labels.tif under --out DIR (or next to it); "
        "complete outputs are skipped unless --overwrite.",
    )
    g.add_argument("--out", "--out-dir", dest="out_dir", metavar="DIR",
                   help="output folder for many inputs (default: next to each input)")  # fmt: skip
    g.add_argument("--prompts", action="append", metavar="CSV",
                   help="prompt CSV (file,plane,kind,coordinates,label) or a napari "
                   "Points/Shapes CSV export; repeatable")  # fmt: skip
    g.add_argument("--auto", action="store_true",
                   help="segment everything on the --plane planes of each file (default: "
                   "every plane); a file whose planes do not exist fails, the others go on")  # fmt: skip
    g.add_argument("--propagate", action="store_true",
                   help="carry the prompted planes' objects through the stack (axis 0)")  # fmt: skip
    g.add_argument("--overwrite", action="store_true", help="redo complete outputs")
    g.add_argument("--summary", metavar="PATH", help="write the summary as .json or .csv")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this dask.distributed scheduler (tcp://host:8786)")  # fmt: skip
    g.add_argument("--workers", type=int, metavar="N",
                   help="run on a local dask cluster of N worker processes")  # fmt: skip
    g.add_argument("--retries", type=int, default=2,
                   help="cluster: extra attempts for a file (or plane range) that fails "
                   "unexpectedly")  # fmt: skip
    g.add_argument("--plane-chunks", type=int, metavar="N",
                   help="--auto on stacks: split each stack into N plane ranges, one task "
                   "each, assembled into one output (default on a cluster: ranges of "
                   "32 planes for stacks of more than 64 planes; 1: never split)")  # fmt: skip
    g.add_argument("--dicom-seg", action="store_true",
                   help="DICOM inputs: write a DICOM SEG (<stem>_labels.dcm, needs highdicom) "
                   "instead of NIfTI")  # fmt: skip


def wants_batch(args) -> bool:
    """True unless this is the one-file form ``segment IMAGE ... -o LABELS.tif``."""
    return (
        args.output is None
        or len(args.image) != 1
        or any(getattr(args, k, None) for k in BATCH_ONLY)
        or getattr(args, "series", 0) == "all"
    )


def run(args) -> int:
    """Run the batch; prints the summary; exit 0, or 3 when a file failed."""
    from . import _prompts
    from ._api import segment_files
    from ._planes import is_single, parse_plane_spec

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.scheduler and args.workers:
        raise UsageError("give --scheduler or --workers, not both")
    if args.output is not None and args.out_dir is not None:
        raise UsageError("give -o FILE (one input) or --out DIR, not both")
    if args.plane_chunks is not None and args.plane_chunks < 1:
        raise UsageError("--plane-chunks must be at least 1")
    try:
        spec = parse_plane_spec(args.plane)
    except ValueError as e:
        raise UsageError(str(e)) from None
    plane = tuple(int(v) for v in spec) if is_single(spec) else ()
    cli_prompts = _prompts.from_lists(
        parse_coords(args.points, 2, "--points"),
        parse_coords(args.negative, 2, "--negative"),
        parse_coords(args.boxes, 4, "--boxes"),
        plane,
    )
    if cli_prompts and spec is not None and not is_single(spec):
        raise UsageError(
            f"--plane {args.plane}: --points/--boxes need one plane (an index per axis); "
            "'all' and ranges select the planes of --auto"
        )
    if args.prompts and cli_prompts:
        raise UsageError("give --prompts CSV or --points/--boxes, not both")
    if not (args.prompts or cli_prompts or args.auto):
        raise UsageError("give prompts (--prompts CSV, --points or --boxes) or --auto.")
    prompts = args.prompts or cli_prompts or None
    if not args.debug:  # dask logs every worker start at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    _calibrate_first(args)
    summary = segment_files(
        args.image,
        args.out_dir,
        output=args.output,
        prompts=prompts,
        auto=args.auto,
        propagate=args.propagate,
        planes=spec if args.auto else None,
        **model_options(args),
        contrast_limits=parse_limits(args.contrast_limits),
        channel=parse_channel(args.channel),
        series=args.series,
        overwrite=args.overwrite,
        scheduler=args.scheduler,
        workers=args.workers,
        retries=args.retries,
        progress=not args.no_progress,
        dicom_seg=args.dicom_seg,
        plane_chunks=args.plane_chunks,
    )
    for r in summary.done:
        print(f"done    {r.input} -> {r.output} ({len(r.objects)} object(s))")
    for line in summary.lines():
        print(line)
    if args.summary:
        print(f"summary written to {summary.write(args.summary)}")
    return 0 if summary.ok else EXIT_SOME_FAILED


def _calibrate_first(args) -> None:
    """``precision=auto`` on a CPU with native bf16: one fp32/bf16 measurement before a run
    of more than a few planes (engine/auto_precision.py); the workers use its verdict."""
    from ..engine.auto_precision import CLI_MIN_PLANES, calibrate_before_run
    from ._files import expand_inputs

    files, _ = expand_inputs(args.image)
    n = max(len(files), CLI_MIN_PLANES + 1) if args.propagate else len(files)  # a volume
    opts = model_options(args)
    calibrate_before_run(
        lambda: segmenter_from_args(args),
        n,
        precision=opts.get("precision"),
        device=opts.get("device"),
        report=lambda text: print(text, file=sys.stderr),
    )
