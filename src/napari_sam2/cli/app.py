"""`napari-sam2 info` and `napari-sam2 demo`: what is installed, and napari with the widget."""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

from ._common import UsageError, add_model_args

SAMPLES = ("nuclei_2d", "nuclei_3d", "bacteria_timelapse")


def dist_version(dist: str) -> str:
    """The installed version of a distribution, or ``not installed``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def add_parsers(sub) -> None:
    """Register ``demo`` and ``info`` on the main parser's ``sub`` (cli.build_parser)."""
    d = sub.add_parser("demo", help="open napari with a sample image and the SAM 2 widget")
    d.add_argument("--sample", choices=SAMPLES, default="nuclei_2d")
    add_model_args(d, extra=())
    d.add_argument("--screenshot", metavar="PNG", help="save a window screenshot and exit")
    d.add_argument("--wait", type=float, default=2.0, help="seconds before the screenshot")

    sub.add_parser("info", help="versions, device, precision and the checkpoints found")


def cmd_info(args) -> int:
    import platform

    from ..engine.backends.factory import CLASSICAL_NOTICE
    from ..engine.backends.sam2 import has_compiled_extension
    from ..engine.model.checkpoints import (
        CHECKPOINT_DIR_ENV,
        default_checkpoint_dirs,
        find_checkpoint,
    )
    from ..engine.model.registry import SIZES, get_spec
    from ..engine.runtime.devices import cpu_has_native_bf16, resolve_device, resolve_precision

    print(f"napari-sam2 {dist_version('napari-sam2')}  (Python {platform.python_version()})")
    for dist in ("napari", "torch", "sam2", "numpy", "scikit-image", "tifffile", "PyQt6"):
        print(f"  {dist:13s} {dist_version(dist)}")
    import torch

    dev = resolve_device("auto")
    extra = f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""
    print(f"device:      {dev}{extra}")
    bf16 = "native bf16 (AVX-512 BF16/AMX)" if cpu_has_native_bf16() else "no native bf16"
    print(f"precision:   {resolve_precision(dev, 'auto')} by default (CPU: {bf16})")
    if dev.type == "cpu" and cpu_has_native_bf16():
        from ..engine.runtime.precision import calibration_dir

        found = sorted(calibration_dir().glob("*.json"))
        print(
            f"             CPU bf16 is used once a calibration measured it faster and agreeing "
            f"(napari_sam2.engine.runtime.precision.calibrate); {len(found)} verdict(s) in "
            f"{calibration_dir()}"
        )
    ext = has_compiled_extension()
    print(f"sam2._C:     {'present' if ext else 'missing'} (hole filling is off in napari-sam2)")
    print(
        f"checkpoint folders searched, then the Hugging Face cache ({CHECKPOINT_DIR_ENV} adds folders):"
    )
    for d in default_checkpoint_dirs():
        print(f"  {d}{'' if d.is_dir() else '  (does not exist)'}")
    print("checkpoints:")
    found = 0
    for version in ("2.1", "2.0"):
        for size in SIZES:
            spec = get_spec(size, version)
            path = find_checkpoint(spec)
            found += path is not None
            if path is not None or version == "2.1":
                print(f"  SAM {version} {size:10s} {path or 'not found'}")
    if not found:
        print(f"note: {CLASSICAL_NOTICE}")
    return 0


# ----------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    import inspect

    import napari

    try:
        from ..widget import SAM2Widget
    except ImportError as e:
        raise UsageError(f"the SAM 2 widget is not available: {e}") from e
    params = inspect.signature(SAM2Widget).parameters
    kwargs = {}
    if args.checkpoint or args.model != "tiny":
        if "segmenter" in params:  # load now: a bad checkpoint fails before the window opens
            from ..engine.segmenter import Segmenter

            kwargs["segmenter"] = Segmenter(args.model, args.checkpoint)
        else:
            kwargs = {k: getattr(args, k) for k in ("model", "checkpoint") if k in params}

    viewer = napari.Viewer(title=f"napari-sam2 demo: {args.sample}")
    try:
        viewer.open_sample("napari-sam2", args.sample)
    except Exception as e:  # noqa: BLE001 - plugin not registered (e.g. source tree)
        logging.getLogger(__name__).info("open_sample failed (%s); loading directly", e)
        from ..io import samples

        for data, kw, layer_type in getattr(samples, args.sample)():
            getattr(viewer, f"add_{layer_type}")(data, **kw)
    widget = SAM2Widget(viewer, **kwargs)
    viewer.window.add_dock_widget(widget, name="SAM 2 segmentation", area="right")
    if args.screenshot:
        import time

        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + max(args.wait, 0.0)
        while True:
            QApplication.processEvents()
            if time.monotonic() >= end:
                break
            time.sleep(0.05)
        out = Path(args.screenshot)
        out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out), canvas_only=False)
        viewer.close()
        print(f"screenshot written to {out}")
        return 0
    napari.run()
    return 0
