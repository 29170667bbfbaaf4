"""What the ``napari-sam2`` subcommands share: their option groups and the code that turns
those options into an opened image, image/labels pairs and a :class:`Segmenter`.

Each command module of :mod:`napari_sam2.cli` (``segment``, ``evaluate``, ``finetune``,
``precompute``, ``convert``, ``app`` for ``demo``/``info``) adds only its own options and
calls these helpers for the rest, so a shared flag has one spelling, default and help text.
Nothing here imports torch or the engine at import time (``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

SIZES = ("tiny", "small", "base_plus", "large")
BACKENDS = ("auto", "sam2", "classical", "transformers")
PRECISIONS = ("auto", "fp32", "bf16")
# the argparse destinations that describe the model (keyword names of Segmenter, finetune,
# segment_files); a command without one of them simply lacks the flag
MODEL_KEYS = ("model", "checkpoint", "backend", "device", "precision", "image_size")


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


# ----------------------------------------------------------------------- option groups
def add_model_args(parser, extra=("backend", "device", "precision", "image_size")):
    """The "model" group: ``--model``, ``--checkpoint`` and those of ``--backend``,
    ``--device``, ``--precision``, ``--image-size`` named in ``extra`` (argparse names)."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", default="tiny", help="SAM 2 size: " + ", ".join(SIZES))
    g.add_argument(
        "--checkpoint",
        help="checkpoint file (or a folder holding it); --backend transformers: a "
        "transformers folder, a cached hub id or a .pt",
    )
    if "backend" in extra:
        g.add_argument(
            "--backend", choices=BACKENDS, default="auto",
            help="auto (default): SAM 2 when a checkpoint is found, else classical",
        )  # fmt: skip
    if "device" in extra:
        g.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    if "precision" in extra:
        g.add_argument(
            "--precision", choices=PRECISIONS, default="auto", help="inference precision"
        )
    if "image_size" in extra:
        g.add_argument(
            "--image-size", type=int, help="SAM 2 input size, multiple of 32 (default 1024)"
        )
    return g


def add_image_args(parser, *, channel: bool = True):
    """The "image" group: ``--contrast-limits``, ``--channel`` (optional) and ``--series``."""
    g = parser.add_argument_group("image")
    g.add_argument("--contrast-limits", help="intensity window lo,hi (default: stack percentiles)")
    if channel:
        g.add_argument(
            "--channel", default="mean",
            help="channel index, mean, max or composite (channel images)",
        )  # fmt: skip
    g.add_argument(
        "--series", type=series_arg, default=0, metavar="N",
        help="image series of a DICOM folder/DICOMDIR or multi-image TIFF (default 0); "
        "segment also takes 'all': every DICOM series, one output each",
    )  # fmt: skip
    return g


def series_arg(text: str) -> int | str:
    """``--series``: a whole number, or ``all`` (every DICOM series; ``segment`` only)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or 'all', got {text!r}"
        ) from None


def add_labelled_images(parser, labels_help: str) -> None:
    """``IMAGE...`` and ``--labels LABELS...`` (one labels file per image)."""
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE",
        help="input image(s) (TIFF, NIfTI, DICOM file or folder)",
    )  # fmt: skip
    parser.add_argument("--labels", nargs="+", required=True, metavar="LABELS", help=labels_help)


# ----------------------------------------------------------------------- value parsing
def parse_coords(text: str | None, n: int, what: str) -> list[tuple[float, ...]]:
    """``"r,c;r,c"`` → ``[(r, c), (r, c)]`` with ``n`` numbers per item."""
    if not text:
        return []
    out = []
    for item in text.replace(" ", "").split(";"):
        if not item:
            continue
        try:
            vals = tuple(float(v) for v in item.split(","))
        except ValueError:
            vals = ()
        if len(vals) != n:
            form = "r,c" if n == 2 else "r0,c0,r1,c1"
            raise UsageError(f"bad {what} {item!r}: expected {form} numbers, ';' between items.")
        out.append(vals)
    return out


def parse_plane(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"bad --plane {text!r}: expected integers such as 12 or 3,12.") from None


def parse_limits(text: str | None):
    if not text:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = 0.0
    if not lo < hi:
        raise UsageError(f"bad --contrast-limits {text!r}: expected lo,hi with lo < hi.")
    return lo, hi


def parse_channel(text: str) -> int | str:
    """``--channel``: an index (``"2"``, ``"-1"``) or a mode (mean, max, composite)."""
    return int(text) if text.lstrip("-").isdigit() else text


# ----------------------------------------------------------------------- inputs
def read_input(path: Path, series: int = 0):
    """One image, whatever its format: a TIFF series (full resolution), a NIfTI volume or
    one DICOM series, as an :class:`napari_sam2.io.formats.Image` (the reader every
    command shares: :func:`napari_sam2.io.formats.read_image`)."""
    from ..io.errors import ImageReadError
    from ..io.formats import read_image as read_any

    if series == "all":
        raise UsageError("--series all is for several outputs: napari-sam2 segment --out DIR")
    if not path.exists():
        raise UsageError(f"no such image file: {path}")
    try:
        return read_any(path, series=series)
    except ImageReadError as e:  # corrupt file, no such series, not an image we read
        raise UsageError(str(e)) from e


def read_image(path: Path, series: int = 0):
    """(array, axes, scale, units) of :func:`read_input`."""
    img = read_input(path, series)
    return img.data, img.axes, img.scale, img.units


def read_labels(path: Path, image):
    """The labels file ``path`` (TIFF, NIfTI or DICOM SEG) on the grid of ``image`` (an
    :class:`~napari_sam2.io.formats.Image` of :func:`read_input`)."""
    from ..io.errors import ImageReadError
    from ..io.formats import read_labels as read_any_labels

    if not path.exists():
        raise UsageError(f"no such labels file: {path}")
    try:
        return read_any_labels(path, image)
    except ImageReadError as e:
        raise UsageError(str(e)) from e


def image_kwargs(data, axes: str | None) -> dict:
    """``Segmenter.set_image`` keywords from the file's axes: ``S`` last → RGB, ``C`` → channels."""
    axes = axes or ""
    return {
        "rgb": axes.endswith("S") and data.shape[-1] in (3, 4),
        "channel_axis": axes.index("C") if "C" in axes else None,
    }


def labelled_pairs(args):
    """Check ``IMAGE...`` against ``--labels`` now; return an iterator reading each pair in
    turn as ``(IMAGE as given, image array, labels array, image_kwargs)``."""
    if len(args.labels) != len(args.images):
        raise UsageError(
            f"{len(args.images)} image(s) but {len(args.labels)} labels file(s): give one "
            "--labels file per image, in the same order."
        )

    def pairs():
        for img_path, lab_path in zip(args.images, args.labels, strict=True):
            img = read_input(Path(img_path))
            gt = read_labels(Path(lab_path), img)
            yield img_path, img.data, gt, image_kwargs(img.data, img.axes)

    return pairs()


def model_options(args) -> dict:
    """The model keywords (``MODEL_KEYS``) this command's arguments have."""
    return {k: getattr(args, k) for k in MODEL_KEYS if hasattr(args, k)}


def segmenter_from_args(args, **extra):
    """The :class:`Segmenter` the model options of a subcommand ask for (``extra``: more kwargs)."""
    from ..engine.segmenter import Segmenter

    opts = model_options(args)
    return Segmenter(opts.pop("model"), opts.pop("checkpoint"), **opts, **extra)


@contextmanager
def stderr_progress(word: str):
    """``with stderr_progress("encoded") as progress:`` a ``progress(done, total)`` callback
    rewriting one ``word done/total`` line on stderr, ended by a newline on the way out (also
    when the work fails, so an error message starts on its own line)."""
    shown = False

    def progress(done, total):
        nonlocal shown
        shown = True
        print(f"\r{word} {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        yield progress
    finally:
        if shown:
            print(file=sys.stderr)
