"""``napari-sam2 calibrate [--checkpoint/--model/--backend]``: fp32 vs bf16 on this CPU.

Measures the model's encoder in fp32 and in bf16 on this CPU (when it computes bf16
natively), compares the masks, prints both times and the verdict and saves it: from then
on ``precision="auto"`` (the default) uses it, in the widget, the CLI and scripts
(docs/performance.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import UsageError, add_model_args, read_input, segmenter_from_args


def add_parser(sub) -> None:
    """Register the subcommand on the main parser's ``sub`` (cli.build_parser)."""
    p = sub.add_parser(
        "calibrate",
        help="measure fp32 vs bf16 on this CPU for a model; save and print the verdict",
        description="Encode one image in fp32 and in bf16 with the chosen SAM 2 model on the "
        "CPU, compare the masks of a grid of clicks, and save the verdict that "
        "precision=auto uses from then on (bf16 only on CPUs with native bf16, when it "
        "is faster and gives the same masks).",
    )
    p.add_argument(
        "--image",
        metavar="IMAGE",
        help="an image to measure on, any format (a stack: its middle plane; default: a test card)",
    )
    p.add_argument("--repeats", type=int, default=2, help="timed encodes per precision")
    add_model_args(p, extra=("backend", "image_size"))


def cmd_calibrate(args) -> int:
    from ..engine.runtime import auto_precision as ap
    from ..engine.runtime import precision as P

    args.device, args.precision = "cpu", "fp32"  # measured on the CPU, from fp32
    seg = segmenter_from_args(args)
    if not ap.can_calibrate(seg.backend):
        raise UsageError(
            "calibrate measures a SAM 2 model (--backend sam2 or transformers with a "
            f"checkpoint); got {seg.describe().get('model', 'no model')}."
            + (f" {seg.notice}" if seg.notice else "")
        )
    image = None
    if args.image:  # any format the other commands read; the middle plane of a stack
        import numpy as np

        image = np.asarray(read_input(Path(args.image)).data)
        while image.ndim > 3 or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
            image = image[image.shape[0] // 2]
    name, flags = P.cpu_info()
    print(f"CPU: {name} (native bf16: {'yes' if P.native_bf16(flags) else 'no'})")
    cal = ap.measure(seg, image, repeats=args.repeats)
    if cal.fp32_s and cal.bf16_s:
        print(f"fp32 {cal.fp32_s:.2f} s, bf16 {cal.bf16_s:.2f} s per encode "
              f"({cal.speedup:.2f}×); masks agree {100 * cal.agreement:.2f} %")  # fmt: skip
    print(f"verdict: {cal.decision}: {ap.reason_text(cal)}")
    where = P.calibration_dir() if cal.checkpoint_sha256 else None
    print(f"saved in {where}" if where else "not saved (the model has no checkpoint file)",
          file=sys.stdout)  # fmt: skip
    return 0
