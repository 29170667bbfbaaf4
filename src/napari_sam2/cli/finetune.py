"""``napari-sam2 finetune``: train SAM 2's mask decoder on labelled images.

::

    napari-sam2 finetune a.tif b.tif --labels a_labels.tif b_labels.tif \\
        --checkpoint sam2.1_hiera_tiny.pt --epochs 10 --out my_tiny.pt

writes ``my_tiny.pt`` (official checkpoint layout, loadable with ``--checkpoint``
everywhere) and ``my_tiny.card.json`` (see docs/finetuning.md), and prints the training
loss and the validation mIoU before/after.
"""

from __future__ import annotations

from pathlib import Path

from ._common import (
    UsageError,
    add_labelled_images,
    add_model_args,
    labelled_pairs,
    model_options,
    parse_plane,
    stderr_progress,
)

HELP = "fine-tune a SAM 2 checkpoint's mask decoder on labelled images"


def add_parser(sub) -> None:
    """Register the subcommand on the main parser's ``sub`` (cli.build_parser)."""
    f = sub.add_parser(
        "finetune",
        help=HELP,
        description="Train the mask decoder of a SAM 2 checkpoint (image encoder frozen, "
        "each plane encoded once) on prompts simulated from your labels; write a checkpoint "
        "in the official layout plus a JSON card (docs/finetuning.md).",
    )
    add_labelled_images(
        f, "instance labels (TIFF, NIfTI or DICOM SEG), one per image, same order and shape"
    )
    f.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    add_model_args(f, extra=("device", "image_size"))
    f.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    f.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    f.add_argument("--batch-size", type=int, default=8, help="objects per step (default 8)")
    f.add_argument("--val-fraction", type=float, default=0.2, help="held-out objects (0.2)")
    f.add_argument("--split", choices=("object", "image"), default="object")
    f.add_argument("--patience", type=int, default=3, help="early-stopping patience (epochs)")
    f.add_argument("--corrective-clicks", type=int, default=2, help="per training prompt")
    f.add_argument("--max-objects", type=int, help="at most this many objects per plane")
    f.add_argument("--train-prompt-encoder", action="store_true", help="train it too")
    f.add_argument("--plane", help="one plane index on the non-spatial axes (default: all)")
    f.add_argument("--seed", type=int, default=0, help="split, prompts and batches (0)")
    f.add_argument(
        "--random-weights", action="store_true",
        help="start from random weights (plumbing checks only)",
    )  # fmt: skip


def cmd_finetune(args) -> int:
    from ..engine.training.finetune import card_path_for, finetune

    pairs = labelled_pairs(args)
    out = Path(args.out)
    ins = {Path(p).resolve() for p in [*args.images, *args.labels]}
    if out.resolve() in ins:
        raise UsageError("--out is one of the inputs: choose another file for the checkpoint.")
    plane = parse_plane(args.plane)
    images, labels, kwargs = [], [], []
    for _, data, gt, kw in pairs:
        images.append(data)
        labels.append(gt)
        kwargs.append(kw)

    with stderr_progress("step") as progress:
        res = finetune(
            images, labels, out=out, **model_options(args), epochs=args.epochs, lr=args.lr,
            batch_size=args.batch_size, train_prompt_encoder=args.train_prompt_encoder,
            val_fraction=args.val_fraction, split=args.split, patience=args.patience,
            corrective_clicks=args.corrective_clicks, max_objects=args.max_objects,
            seed=args.seed, random_weights=args.random_weights, image_kwargs=kwargs,
            planes=[[plane]] * len(images) if plane else None,
            names=[Path(p).name for p in args.images], progress=progress,
        )  # fmt: skip
    card = res.card
    print(
        f"{card['n_objects']} object(s) on {card['n_planes']} plane(s): "
        f"{card['n_train_objects']} for training, {card['n_val_objects']} for validation"
    )
    print("epoch  train loss  val mIoU point  val mIoU box")
    for h in res.history:
        loss = "-" if h["train_loss"] is None else f"{h['train_loss']:.4f}"
        print(
            f"{h['epoch']:5d}  {loss:>10s}  {_num(h['val_point']):>14s}  {_num(h['val_box']):>12s}"
        )
    print(f"kept epoch {res.best_epoch}" + (" (the base model)" if res.best_epoch == 0 else ""))
    print(f"wrote {res.checkpoint} and {card_path_for(res.checkpoint).name} ({card['seconds']} s)")
    return 0


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"
