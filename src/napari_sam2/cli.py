"""The ``napari-sam2`` console script: ``demo``, ``info``, ``segment``, ``evaluate``, ``precompute``,
``convert``, ``finetune``.

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
from pathlib import Path

from . import _calibrate_cli, _convert_cli, _evaluate_cli, _finetune_cli, _precompute_cli
from ._app_cli import _version, cmd_demo, cmd_info
from ._cli_common import (  # noqa: F401 - also this module's public names (tests, batch)
    SIZES,
    UsageError,
    add_image_args,
    add_model_args,
    image_kwargs,
    parse_channel,
    parse_coords,
    parse_limits,
    parse_plane,
    read_image,
    segmenter_from_args,
)

PROG = "napari-sam2"
SAMPLES = ("nuclei_2d", "nuclei_3d", "bacteria_timelapse")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="SAM 2 segmentation for napari: open the demo, check the set-up, or "
        "segment a TIFF from the command line.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version('napari-sam2')}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(
        dest="command",
        metavar="{demo,info,segment,evaluate,precompute,convert,finetune,calibrate}",
    )

    d = sub.add_parser("demo", help="open napari with a sample image and the SAM 2 widget")
    d.add_argument("--sample", choices=SAMPLES, default="nuclei_2d")
    add_model_args(d, extra=())
    d.add_argument("--screenshot", metavar="PNG", help="save a window screenshot and exit")
    d.add_argument("--wait", type=float, default=2.0, help="seconds before the screenshot")

    sub.add_parser("info", help="versions, device, precision and the checkpoints found")

    s = sub.add_parser(
        "segment",
        help="segment objects of images from points/boxes/CSV prompts or --auto; write labels TIFFs",
        description="Coordinates are data pixels (row,col) of the plane. One object per box "
        "(points inside a box join it); points without boxes make one object.",
    )
    s.add_argument("image", nargs="+", metavar="IMAGE", help="input image(s), folders or globs")
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
    from .batch._cli import add_arguments

    add_arguments(s)  # several files, --auto, --propagate, dask: docs/batch.md
    _evaluate_cli.add_parser(sub)  # simulated-click evaluation: docs/evaluation.md
    _precompute_cli.add_parser(sub)  # disk embedding cache: docs/performance.md
    _convert_cli.add_parser(sub)  # .pt <-> transformers folder: docs/models.md
    _finetune_cli.add_parser(sub)  # train the mask decoder: docs/finetuning.md
    _calibrate_cli.add_parser(sub)  # fp32 vs bf16 verdict: docs/performance.md
    return p


# -------------------------------------------------------------------------- segment
MEDICAL_OUT = (".nii.gz", ".nii", ".dcm", ".tif", ".tiff")


def _medical_input(item: str) -> bool:
    """A NIfTI file or a DICOM file/folder (``segment scan.nii.gz ... -o seg.nii.gz``)."""
    from .batch import _files as F

    path = Path(item)
    return F._suffix(path) in F.NIFTI_SUFFIXES or F.is_dicom(path)


def cmd_segment(args) -> int:
    import numpy as np

    from .batch._cli import run, wants_batch
    from .engine.edits import plan_edits
    from .engine.labels import apply_edit
    from .engine.prompts import make_objects

    medical = len(args.image) == 1 and _medical_input(args.image[0])
    if medical and args.output and not args.output.lower().endswith(MEDICAL_OUT):
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
    if not args.output.lower().endswith((".tif", ".tiff")):
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


def write_labels_tiff(path: Path, labels, provenance: dict, *, axes, scale, units) -> None:
    """Our writer (ImageJ/OME metadata + provenance) when present, else plain zlib TIFF."""
    try:
        from .io.provenance import make_provenance
        from .io.writer import save_labels
    except ImportError:
        save_labels = None
    if save_labels is not None:
        if not (axes and len(set(axes)) == len(axes) and set(axes) <= set("TZYX")):
            axes = scale = units = None  # let the writer pick TZYX defaults
        save_labels(
            path, labels, scale=scale, units=units, axes=axes,
            provenance=make_provenance(**provenance),
        )  # fmt: skip
        return
    import json

    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path,
        labels.astype("uint16" if labels.max() < 65536 else "uint32"),
        compression="zlib",
        description=json.dumps(provenance, default=str),
    )


# ----------------------------------------------------------------------------- main
COMMANDS = {
    "demo": cmd_demo,
    "info": cmd_info,
    "segment": cmd_segment,
    "evaluate": _evaluate_cli.cmd_evaluate,
    "precompute": _precompute_cli.cmd_precompute,
    "convert": _convert_cli.cmd_convert,
    "finetune": _finetune_cli.cmd_finetune,
    "calibrate": _calibrate_cli.cmd_calibrate,
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
    from .engine.errors import NapariSam2Error

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
