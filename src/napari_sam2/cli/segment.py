"""``napari-sam2 segment``: one image from points/boxes (``-o LABELS.tif``), or many files,
``--auto``, ``--propagate``, NIfTI/DICOM inputs and dask clusters through
:func:`napari_sam2.batch.segment_files` (docs/batch.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..io.formats import LABELS_SUFFIXES, TIFF_SUFFIXES, image_kind
from ._common import (
    UsageError,
    add_image_args,
    add_model_args,
    image_kwargs,
    model_options,
    parse_channel,
    parse_coords,
    parse_limits,
    parse_plane,
    read_image,
    segmenter_from_args,
)
from .dicomweb import add_arguments as add_pacs_arguments
from .dicomweb import run as run_dicomweb
from .dicomweb import wants_dicomweb

BATCH_ONLY = ("out_dir", "prompts", "auto", "propagate", "overwrite", "summary", "scheduler",
              "workers", "dicom_seg", "plane_chunks", "segments")  # fmt: skip
EXIT_SOME_FAILED = 3


def add_parser(sub) -> None:
    """Register the subcommand on the main parser's ``sub`` (cli.build_parser)."""
    s = sub.add_parser(
        "segment",
        help="segment objects of images from points/boxes/CSV prompts or --auto; write labels TIFFs",
        description="Coordinates are data pixels (row,col) of the plane. One object per box "
        "(points inside a box join it); points without boxes make one object.",
    )
    s.add_argument("image", nargs="*", metavar="IMAGE", help="input image(s), folders or globs")
    s.add_argument("--points", help='positive clicks "r,c;r,c"')
    s.add_argument("--negative", help='negative clicks "r,c;r,c"')
    s.add_argument("--boxes", help='boxes "r0,c0,r1,c1;..."')
    s.add_argument(
        "--plane",
        help="plane, one item per non-spatial axis (T,Z...): e.g. 12 or 3,12 (-1 = last); "
        "with --auto also 'all' or start:stop ranges, e.g. all,12 (default: every plane; "
        "2-D images ignore --plane there; docs/batch.md)",
    )
    s.add_argument(
        "-o", "--output", help="labels file to write (one input): .tif; .nii.gz for NIfTI/DICOM"
    )
    add_model_args(s)
    add_image_args(s)
    add_arguments(s)  # several files, --auto, --propagate, dask: docs/batch.md
    add_pacs_arguments(s)  # dicomweb:// series from a PACS, --stow: docs/medical.md


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
    g.add_argument("--segments", metavar="FILE",
                   help="with --dicom-seg: segment names and SNOMED CT codes per label ID, a "
                   "JSON ({\"1\": \"Liver\"}) or CSV (id,label,category,type) file")  # fmt: skip


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
    from ..batch import is_single, parse_plane_spec, prompts_from_lists, segment_files

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
    cli_prompts = prompts_from_lists(
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
        segments=args.segments,
        plane_chunks=args.plane_chunks,
    )
    for r in summary.done:
        print(f"done    {r.input} -> {r.output} ({len(r.objects)} object(s))")
    for line in summary.lines():
        print(line)
    if args.summary:
        print(f"summary written to {summary.write(args.summary)}")
    return 0 if summary.ok else EXIT_SOME_FAILED


# ----------------------------------------------------------------- one image, -o
def cmd_segment(args) -> int:
    import numpy as np

    from ..engine.edits import plan_edits
    from ..engine.labels import apply_edit
    from ..engine.prompts import make_objects
    from ..io.tiff.writer import write_labels_tiff

    if wants_dicomweb(args):
        return run_dicomweb(args, run)
    if not args.image:
        raise UsageError("give an IMAGE (or --dicomweb URL --study UID)")
    medical = len(args.image) == 1 and image_kind(args.image[0]) in ("nifti", "dicom")
    if medical and args.output and not args.output.lower().endswith(LABELS_SUFFIXES):
        raise UsageError(
            f"-o {args.output}: give a labels name ending in .nii.gz or .nii (or .tif; .dcm "
            "with --dicom-seg)."
        )
    if wants_batch(args) or medical:
        return run(args)  # NIfTI and DICOM go through the batch readers and writers
    [args.image] = args.image
    points = parse_coords(args.points, 2, "--points")
    negative = parse_coords(args.negative, 2, "--negative")
    boxes = parse_coords(args.boxes, 4, "--boxes")
    if not (points or boxes):
        raise UsageError("give at least one positive point (--points) or box (--boxes).")
    plane = parse_plane(args.plane)
    limits = parse_limits(args.contrast_limits)
    channel = parse_channel(args.channel)

    if Path(args.output).resolve() == Path(args.image).resolve():
        raise UsageError("--output is the input image: choose another file for the labels.")
    if not args.output.lower().endswith(TIFF_SUFFIXES):
        raise UsageError(
            f"-o {args.output}: labels are written as a TIFF; give a name ending in .tif or "
            ".ome.tif (NIfTI and DICOM inputs: .nii.gz)."
        )
    data, axes, scale, units = read_image(Path(args.image), args.series)
    kwargs = image_kwargs(data, axes)
    axes = axes or ""
    keep = [i for i, a in enumerate(axes) if a not in "CS"] if axes else list(range(data.ndim))

    seg = segmenter_from_args(args)
    seg.set_image(data, contrast_limits=limits, channel=channel, **kwargs)
    src = seg.source
    if not plane and src.index_shape:
        raise UsageError(
            f"the image has non-spatial axes of shape {src.index_shape}: choose a plane "
            f"with --plane (e.g. --plane {','.join(str(n // 2) for n in src.index_shape)})."
        )
    labels = np.zeros(src.index_shape + src.plane_shape, dtype=np.int32)
    coords = points + negative
    objects = make_objects(
        coords or None,
        [1] * len(points) + [0] * len(negative) if coords else None,
        boxes or None,
    )
    index = src.check_index(plane)
    edits = plan_edits(labels, seg.predict(index, objects=objects), index)
    for e in edits:
        apply_edit(labels, e)
    ids = [e.label_id for e in edits]
    prov = {
        "source_image": str(Path(args.image).resolve()),
        "plane": list(plane),
        "command": "napari-sam2 segment",
        **seg.describe(),
        "objects": {  # each ID with the prompt of the object it was written from
            int(e.label_id): [{**objects[e.object_index].to_dict(), "plane": list(plane)}]
            for e in edits
        },
    }
    lab_axes = "".join(axes[i] for i in keep) if axes else None
    write_labels_tiff(
        Path(args.output),
        labels,
        prov,
        axes=lab_axes,
        scale=[scale[i] for i in keep] if scale else None,
        units=[units[i] for i in keep] if units else None,
    )
    backend = seg.describe().get("backend")
    print(
        f"wrote {len(ids)} object(s) (IDs {', '.join(map(str, ids)) or '-'}) "
        f"with the {backend} backend to {args.output}"
    )
    return 0


def _calibrate_first(args) -> None:
    """``precision=auto`` on a CPU with native bf16: one fp32/bf16 measurement before a run
    of more than a few planes (engine/runtime/auto_precision.py); the workers use its verdict."""
    import sys

    from ..batch import expand_inputs
    from ..engine.runtime.auto_precision import CLI_MIN_PLANES, calibrate_before_run

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
