"""``napari-sam2 convert SRC DST``: official ``.pt`` ↔ Hugging Face transformers folder.

The direction follows ``SRC``: a checkpoint file becomes a transformers folder
(``config.json`` + ``model.safetensors`` + ``preprocessor_config.json``), a transformers
folder becomes an official ``.pt`` file.  See docs/models.md, "Converting checkpoints".
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    """Register the subcommand on the main parser's ``sub`` (cli.build_parser)."""
    p = sub.add_parser(
        "convert",
        help="convert a SAM 2 checkpoint: official .pt <-> transformers folder",
        description="SRC a .pt file: DST is the transformers folder to write. SRC a "
        "transformers folder: DST is the .pt file to write. Every tensor is kept unchanged.",
    )
    p.add_argument("src", metavar="SRC", help="official .pt checkpoint or transformers folder")
    p.add_argument("dst", metavar="DST", help="folder (from a .pt) or .pt file (from a folder)")
    p.add_argument(
        "--image-size",
        type=int,
        help="input size written into the folder's config (default 1024; .pt → folder only)",
    )


def cmd_convert(args) -> int:
    from pathlib import Path

    from ..engine.model.convert import convert

    if Path(args.dst).exists() and Path(args.dst).is_file() == Path(args.src).is_file():
        print(f"napari-sam2 convert: overwriting {args.dst}", file=sys.stderr)
    out = convert(args.src, args.dst, image_size=args.image_size)
    print(out)
    return 0
