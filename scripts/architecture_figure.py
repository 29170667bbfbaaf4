"""Draw docs/images/architecture.png: the rooms of ``src/napari_sam2`` and their imports.

An arrow means "imports".  Rooms lower on the figure never import rooms higher up
(engine < io < adapter < widget | batch < cli, and server between engine and cli); the
blue rooms never import napari or Qt.  docs/architecture.md explains the figure.

Usage (from the repository root; matplotlib comes with the ``all`` extra)::

    .venv/bin/python scripts/architecture_figure.py            # writes docs/images/architecture.png
    .venv/bin/python scripts/architecture_figure.py -o /tmp/a.svg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "architecture.png"

FREE = "#dbe9f6"  # napari-free rooms
GUI = "#fde3c4"  # rooms that may import napari (and Qt: widget only)
TOP = "#dcefd8"  # the command line
EXTERNAL = "#eeeeee"
EDGE = "#37474f"

# name: (x0, y0, x1, y1, colour, title, body)
ROOMS = {
    "cli": (
        33,
        61,
        85,
        69,
        TOP,
        "cli/",
        "one module per command: segment · evaluate · precompute · convert\n"
        "finetune · app (demo, info) · serve",
    ),
    "widget": (
        19,
        43,
        45,
        55,
        GUI,
        "widget/   (Qt dock, flat)",
        "_dock · _commit · _notify\n_panels: one module per panel\n_runner · _background · _lifecycle",
    ),
    "batch": (
        49,
        43,
        73,
        55,
        FREE,
        "batch/",
        "segment_files (_api)\n_files · _outputs · _work\n_chunks · _cluster (dask)",
    ),
    "server": (
        77,
        43,
        99,
        55,
        FREE,
        "server/   (FastAPI)",
        "napari-sam2 serve\napp · auth · scheduler\nrunner",
    ),
    "adapter": (
        19,
        25,
        45,
        38,
        GUI,
        "adapter/   (napari layers, flat)",
        "session · commit · coords · prompts\npreview · layers · tiles · channels\n"
        "everything · propagate · measure\nmedical_writers · history · finetune",
    ),
    "io": (
        30,
        12,
        68,
        21,
        FREE,
        "io/   (files, napari-free)",
        "formats.py: the suffix registry · errors · dtypes\n"
        "provenance · samples · dicomweb · tiff/ · medical/ · exports/",
    ),
    "engine": (
        1,
        0,
        99,
        8.5,
        FREE,
        "engine/   (numpy + torch + sam2)",
        "core: segmenter · planes · prompts · labels · edits · errors · cancel · tiling · measure\n"
        "model/ · runtime/ · backends/ (classical, sam2, transformers, remote/) · cache/ · "
        "automatic/ · propagation/ · training/",
    ),
    "napari": (
        1,
        25,
        15,
        55,
        EXTERNAL,
        "napari\n+ Qt",
        "(external)\n\nonly adapter\nand widget\nimport them",
    ),
}

# (importer, imported, start (x, y), end (x, y), curvature)
EDGES = [
    ("cli", "widget", (42, 61), (34, 55), 0.0),
    ("cli", "batch", (59, 61), (61, 55), 0.0),
    ("cli", "server", (76, 61), (86, 55), 0.0),
    ("widget", "adapter", (32, 43), (32, 38), 0.0),
    ("widget", "napari", (19, 49), (15, 49), 0.0),
    ("adapter", "napari", (19, 31.5), (15, 31.5), 0.0),
    ("adapter", "io", (38, 25), (38, 21), 0.0),
    ("adapter", "engine", (23, 25), (23, 8.5), 0.0),
    ("batch", "io", (58, 43), (58, 21), 0.0),
    ("batch", "engine", (71, 43), (71, 8.5), 0.0),
    ("server", "engine", (88, 43), (88, 8.5), 0.0),
]


def draw(ax) -> None:
    for x0, y0, x1, y1, colour, title, body in ROOMS.values():
        ax.add_patch(
            FancyBboxPatch(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                boxstyle="round,pad=0.2,rounding_size=0.8",
                facecolor=colour,
                edgecolor=EDGE,
                linewidth=1.2,
            )
        )
        ax.text(
            (x0 + x1) / 2,
            y1 - 1.0,
            title,
            ha="center",
            va="top",
            fontsize=10.5,
            fontweight="bold",
            family="DejaVu Sans Mono",
        )
        ax.text(
            (x0 + x1) / 2,
            (y0 + y1) / 2 - (1.6 if y1 - y0 > 9 else 1.3),
            body,
            ha="center",
            va="center",
            fontsize=8.2,
            linespacing=1.35,
        )
    for _src, _dst, start, end, rad in EDGES:
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=14,
                linewidth=1.4,
                color=EDGE,
                connectionstyle=f"arc3,rad={rad}",
                shrinkA=0,
                shrinkB=0,
            )
        )
    ax.legend(
        handles=[
            Patch(facecolor=FREE, edgecolor=EDGE, label="never imports napari or Qt"),
            Patch(facecolor=GUI, edgecolor=EDGE, label="napari layers (adapter), Qt (widget)"),
            Patch(facecolor=TOP, edgecolor=EDGE, label="console script (napari only for demo)"),
        ],
        loc="upper left",
        bbox_to_anchor=(0.0, 1.0),
        fontsize=8,
        frameon=False,
    )
    ax.text(
        50,
        -1.8,
        "arrow = imports (the main edges);  a room may import any room below it, never one above:  "
        "engine < io < adapter < widget | batch < cli,   engine < server < cli",
        ha="center",
        va="top",
        fontsize=8.5,
        style="italic",
        color="#455a64",
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", type=Path, default=OUT, help="PNG or SVG file")
    args = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(12, 8.6))
    ax.set_xlim(0, 100)
    ax.set_ylim(-4.5, 70.5)
    ax.axis("off")
    draw(ax)
    fig.tight_layout(pad=0.3)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(
        args.output, dpi=110, metadata={"Software": None} if args.output.suffix == ".png" else None
    )
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
