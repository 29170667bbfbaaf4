"""``napari-sam2 evaluate``: simulated-click evaluation of a backend on labelled images.

::

    napari-sam2 evaluate a.tif b.tif --labels a_labels.tif b_labels.tif --clicks 5 --out eval/

writes ``eval/results.csv``, ``eval/results.json`` and ``eval/curve.png`` (see
docs/evaluation.md) and prints the mean IoU per click count.
"""

from __future__ import annotations

from pathlib import Path

from ._common import (
    UsageError,
    add_labelled_images,
    add_model_args,
    labelled_pairs,
    parse_plane,
    segmenter_from_args,
)

HELP = "measure a model on labelled images with simulated clicks (mean IoU per click count)"


def add_parser(sub) -> None:
    """Register the subcommand on the main parser's ``sub`` (cli.build_parser)."""
    e = sub.add_parser(
        "evaluate",
        help=HELP,
        description="For each ground-truth object: a first prompt (interior point or box), "
        "then corrective clicks at the centre of the largest error region; the IoU after "
        "each click is written to results.csv/results.json and plotted in curve.png.",
    )
    add_labelled_images(
        e, "ground-truth labels (TIFF, NIfTI or DICOM SEG), one per image, same order"
    )
    e.add_argument("--clicks", type=int, default=5, help="prompts per object (default 5)")
    e.add_argument("--first", choices=("point", "box"), default="point", help="first prompt")
    e.add_argument("--plane", help="plane index on the non-spatial axes, e.g. 12 or 3,12")
    e.add_argument("--max-objects", type=int, help="measure at most this many objects per image")
    e.add_argument("--seed", type=int, default=0, help="seed of the --max-objects choice")
    e.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    add_model_args(e)


def cmd_evaluate(args) -> int:
    import numpy as np

    from ..engine.training.evaluate import evaluate as run_eval
    from ..engine.training.evaluate import overall_mean, plot_curves, write_csv, write_json

    pairs = labelled_pairs(args)
    if args.clicks < 1:
        raise UsageError("--clicks must be at least 1.")
    plane = parse_plane(args.plane)
    seg = segmenter_from_args(args)
    results = []
    for img_path, data, gt, kwargs in pairs:
        seg.set_image(data, **kwargs)
        if not plane and seg.source.index_shape:
            raise UsageError(
                f"{img_path} has non-spatial axes of shape {seg.source.index_shape}: choose "
                "a plane with --plane."
            )
        res = run_eval(
            seg, None, np.asarray(gt), plane=plane, n_clicks=args.clicks, first=args.first,
            seed=args.seed, max_objects=args.max_objects, name=Path(img_path).name,
        )  # fmt: skip
        results.append(res)
        print(f"{res.image}: {len(res.label_ids)} object(s)  " + _curve(res.mean_iou))
    out = Path(args.out)
    backend = results[0].backend if results else ""
    facts = {"backend": backend, "first": args.first, "clicks": args.clicks}
    write_csv(results, out / "results.csv")
    write_json(results, out / "results.json", **facts, model=seg.describe())
    png = plot_curves(results, out / "curve.png", title=f"{backend} ({args.first} first)")
    n = sum(len(r.label_ids) for r in results)
    print(f"\nmean IoU over {n} object(s), {backend} backend, first prompt: {args.first}")
    print("clicks  " + "  ".join(f"{k:>6d}" for k in range(1, args.clicks + 1)))
    print("mIoU    " + "  ".join(f"{v:6.3f}" for v in overall_mean(results)))
    made = "results.csv, results.json" + (", curve.png" if png else " (no matplotlib: no plot)")
    print(f"wrote {made} to {out}")
    return 0


def _curve(values) -> str:
    return "mIoU " + " ".join(f"{v:.3f}" for v in values)
