"""``napari-sam2 precompute IMAGE --disk-cache DIR``: encode every plane once, for later.

Fills the persistent embedding cache (docs/performance.md) so that the widget, a script or
``napari-sam2 segment`` on the same image, model and contrast window encodes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import (
    add_image_args,
    add_model_args,
    image_kwargs,
    parse_channel,
    parse_limits,
    read_image,
    segmenter_from_args,
    stderr_progress,
)


def add_parser(sub) -> None:
    """Register the subcommand on the main parser's ``sub`` (cli.build_parser)."""
    p = sub.add_parser(
        "precompute",
        help="encode every plane of an image into the on-disk embedding cache",
        description="Encode all planes of IMAGE and store the embeddings in the disk cache "
        "(docs/performance.md). Use the same --model/--checkpoint/--image-size/--precision, "
        "--channel and contrast limits as the later session, or its embeddings will not match.",
    )
    p.add_argument(
        "image", metavar="IMAGE", help="input image (TIFF, NIfTI, DICOM file or folder)"
    )
    p.add_argument(
        "--disk-cache",
        required=True,
        metavar="DIR",
        help='cache folder, or "default" for ~/.cache/napari-sam2/embeddings',
    )
    p.add_argument("--max-gb", type=float, default=20.0, help="cache size cap (default 20 GB)")
    add_model_args(p)
    add_image_args(p)


def cmd_precompute(args) -> int:
    import numpy as np

    from ..engine.cache.disk import DiskCache, default_dir
    from ..engine.runtime.auto_precision import calibrate_if_needed

    folder = default_dir() if args.disk_cache == "default" else Path(args.disk_cache)
    cache = DiskCache(folder, max_bytes=int(args.max_gb * 1024**3))
    data, axes, _, _ = read_image(Path(args.image), args.series)
    seg = segmenter_from_args(args, disk_cache=cache)
    if seg.notice:
        print(seg.notice, file=sys.stderr)
    seg.set_image(
        data,
        contrast_limits=parse_limits(args.contrast_limits),
        channel=parse_channel(args.channel),
        **image_kwargs(data, axes),
    )
    n_planes = int(np.prod(seg.source.index_shape, dtype=np.int64))
    calibrate_if_needed(seg, n_planes, report=lambda text: print(text, file=sys.stderr))
    with stderr_progress("encoded") as progress:
        n = seg.precompute(progress=progress)
    st = seg.stats
    print(
        f"{n} planes: {st.encodes} encoded, {st.disk_hits} already cached; "
        f"cache {cache.folder} holds {cache.nbytes / 1e6:.1f} MB"
    )
    return 0
