"""Building a SAM 2 model and loading its checkpoint.

Loading never touches hydra's global state: the model config is read with OmegaConf
from the installed ``sam2`` package and instantiated directly, so loading twice, or after
another library initialised hydra, works.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import DeviceMemoryError
from ..runtime import llvm_guard
from ..runtime.allocator import prefer_huge_pages
from ..runtime.devices import free_device_memory, memory_advice, resolve_device, resolve_precision
from ..runtime.precision import auto_cpu_precision
from .checkpoints import file_sha256, resolve_checkpoint
from .registry import ModelSpec, get_spec
from .sam2_compat import check_sam2_version
from .state_dict import check_state_dict, load_weights, read_state_dict

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------- building
def load_model_config(spec: ModelSpec, image_size: int | None = None):
    """The model's OmegaConf config, read from the sam2 package (no hydra globals)."""
    from omegaconf import OmegaConf  # lazy: keeps `import napari_sam2.engine` light

    llvm_guard.avoid_llvm_clash()  # before sam2/torchvision are imported (a viewer may exist)

    text = resources.files("sam2").joinpath(spec.config).read_text()
    cfg = OmegaConf.create(text)
    # what sam2.build_sam applies for inference ("apply_postprocessing")
    extra = OmegaConf.create(
        {
            "model": {
                "sam_mask_decoder_extra_args": {
                    "dynamic_multimask_via_stability": True,
                    "dynamic_multimask_stability_delta": 0.05,
                    "dynamic_multimask_stability_thresh": 0.98,
                }
            }
        }
    )
    cfg = OmegaConf.merge(cfg, extra)
    if image_size is not None:
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}.")
        cfg.model.image_size = int(image_size)
    OmegaConf.resolve(cfg)
    return cfg


def build_model(spec: ModelSpec, *, image_size: int | None = None):
    """Instantiate the SAM 2 architecture with random weights (on CPU)."""
    from hydra.utils import instantiate

    cfg = load_model_config(spec, image_size)
    return instantiate(cfg.model, _recursive_=True)


def to_device(net, spec: ModelSpec, dev, prec):
    """``net`` on ``dev`` in eval mode; out of device memory → :class:`DeviceMemoryError`
    (the partly moved model is dropped: nothing half-loaded stays on the device)."""
    import torch

    try:
        return net.to(dev).eval()
    except torch.OutOfMemoryError:
        failed = True
    if failed:
        del net
        free_device_memory(dev)
        raise DeviceMemoryError(
            f"Out of memory on {dev} while loading {spec.name} ({prec}): "
            + memory_advice(spec.size, dev, prec)
        )


@dataclass
class LoadedModel:
    model: object
    spec: ModelSpec
    device: object
    precision: str
    checkpoint: Path | None
    checkpoint_sha256: str | None


def load_sam2(
    model: str = "tiny",
    checkpoint=None,
    *,
    version: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    allow_download: bool = False,
    random_weights: bool = False,
    hash_checkpoint: bool = True,
) -> LoadedModel:
    """Build a SAM 2 model and load its checkpoint.

    ``random_weights=True`` skips the checkpoint (tests, plumbing checks); the result then
    says so in :attr:`LoadedModel.checkpoint` (None).
    """
    prefer_huge_pages()  # before torch is imported: see runtime/allocator.py for why here
    spec = get_spec(model, version)
    check_sam2_version()
    dev = resolve_device(device)
    prec = resolve_precision(dev, precision)
    path = (
        None
        if random_weights
        else resolve_checkpoint(spec, checkpoint, allow_download=allow_download)
    )
    sd = None
    if path is not None:  # a bad file fails here, before anything is built
        sd = read_state_dict(path)
        check_state_dict(sd, spec, path)
    net = build_model(spec, image_size=image_size)
    if sd is not None:
        load_weights(net, spec, path, sd)
    del sd
    net = to_device(net, spec, dev, prec)
    sha = file_sha256(path) if (path is not None and hash_checkpoint) else None
    if dev.type == "cpu" and (precision or "auto").lower() == "auto":  # runtime/precision.py
        prec = auto_cpu_precision(spec.name, sha, int(net.image_size))
    log.info("Loaded %s on %s (%s) from %s", spec.name, dev, prec, path or "random weights")
    return LoadedModel(net, spec, dev, prec, path, sha)
