"""SAM 2 model registry, checkpoint discovery and loading, device and precision.

Loading never touches hydra's global state: the model config is read with OmegaConf
from the installed ``sam2`` package and instantiated directly, so loading twice, or after
another library initialised hydra, works.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .devices import (  # noqa: F401 - re-exported: part of this module's API
    autocast,
    cpu_has_native_bf16,
    free_device_memory,
    memory_advice,
    resolve_device,
    resolve_precision,
)
from .errors import (
    CheckpointCorruptError,
    CheckpointNotFoundError,
    DeviceMemoryError,
    HubUnavailableError,
    UnknownModelError,
)
from .sam2_compat import check_sam2_api, check_sam2_version  # noqa: F401 - re-exported
from .state_dict import (  # noqa: F401 - re-exported: part of this module's API
    check_state_dict,
    guess_size,
    guess_version,
    load_weights,
    read_state_dict,
)

log = logging.getLogger(__name__)

SIZES = ("tiny", "small", "base_plus", "large")
VERSIONS = ("2.1", "2.0")
CHECKPOINT_DIR_ENV = "NAPARI_SAM2_CHECKPOINT_DIR"
_DL_BASE = {
    "2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/",
    "2.0": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/",
}
# (trunk embed_dim, number of trunk blocks) identifies a size in a state dict
_ARCH = {"tiny": (96, 12), "small": (96, 16), "base_plus": (112, 24), "large": (144, 48)}
_SHORT = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
_HF = {"tiny": "tiny", "small": "small", "base_plus": "base-plus", "large": "large"}


@dataclass(frozen=True)
class ModelSpec:
    """One SAM 2 model: size, version, config, checkpoint file name and hub id."""

    size: str
    version: str = "2.1"

    @property
    def config(self) -> str:
        """Config path inside the ``sam2`` package (the name ``build_sam2`` takes)."""
        if self.version == "2.1":
            return f"configs/sam2.1/sam2.1_hiera_{_SHORT[self.size]}.yaml"
        return f"configs/sam2/sam2_hiera_{_SHORT[self.size]}.yaml"

    @property
    def checkpoint_name(self) -> str:
        prefix = "sam2.1" if self.version == "2.1" else "sam2"
        return f"{prefix}_hiera_{self.size}.pt"

    @property
    def hf_id(self) -> str:
        prefix = "sam2.1" if self.version == "2.1" else "sam2"
        return f"facebook/{prefix}-hiera-{_HF[self.size]}"

    @property
    def url(self) -> str:
        return _DL_BASE[self.version] + self.checkpoint_name

    @property
    def name(self) -> str:
        return f"sam{self.version}-{self.size}"


def get_spec(model: str = "tiny", version: str | None = None) -> ModelSpec:
    """Parse ``"tiny"``, ``"base_plus"``, ``"base-plus"``, ``"sam2.1-small"``, a hub id..."""
    name = str(model).strip().lower().replace("-", "_").replace("+", "_plus")
    ver = version
    for prefix, v in (
        ("facebook/sam2.1_hiera_", "2.1"),
        ("facebook/sam2_hiera_", "2.0"),
        ("sam2.1_hiera_", "2.1"),
        ("sam2_hiera_", "2.0"),
        ("sam2.1_", "2.1"),
        ("sam2_", "2.0"),
        ("sam2.0_", "2.0"),
    ):
        if name.startswith(prefix):
            name, ver = name[len(prefix) :], ver or v
            break
    name = {
        "t": "tiny",
        "s": "small",
        "b_plus": "base_plus",
        "b": "base_plus",
        "base": "base_plus",
        "l": "large",
    }.get(name, name)
    ver = ver or "2.1"
    if name not in SIZES or ver not in VERSIONS:
        raise UnknownModelError(
            f"Unknown SAM 2 model {model!r}: choose a size among {', '.join(SIZES)} "
            f"and a version among {', '.join(VERSIONS)}."
        )
    return ModelSpec(name, ver)


def default_checkpoint_dirs() -> list[Path]:
    """Where we look for official checkpoint files, in order."""
    dirs = []
    env = os.environ.get(CHECKPOINT_DIR_ENV)
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    dirs += [
        Path.home() / ".cache" / "napari-sam2",
        Path.home() / ".cache" / "sam2",
        Path.cwd() / "checkpoints",
    ]
    return dirs


def find_checkpoint(spec: ModelSpec, checkpoint=None, search_dirs=None) -> Path | None:
    """Resolve a checkpoint file without the network; None when nothing is found.

    ``checkpoint`` may be a file (returned if it exists, else an error) or a directory
    holding the official file name.
    """
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if p.is_dir():
            cand = p / spec.checkpoint_name
            if cand.is_file():
                return cand
            raise CheckpointNotFoundError(_missing_message(spec, [p]))
        if p.is_file():
            return p
        raise CheckpointNotFoundError(
            f"Checkpoint file {str(p)!r} does not exist. " + _how_to_get(spec)
        )
    dirs = list(search_dirs) if search_dirs is not None else default_checkpoint_dirs()
    for d in dirs:
        cand = Path(d) / spec.checkpoint_name
        if cand.is_file():
            return cand
    return _hf_cached(spec)


def _hf_cached(spec: ModelSpec) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        p = try_to_load_from_cache(spec.hf_id, spec.checkpoint_name)
    except Exception:  # noqa: BLE001 - a broken cache is just "not cached"
        return None
    return Path(p) if isinstance(p, str) and Path(p).is_file() else None


def download_checkpoint(spec: ModelSpec) -> Path:
    """Fetch the checkpoint from the Hugging Face hub (needs huggingface_hub + network)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise HubUnavailableError(
            "huggingface_hub is not installed (pip install 'napari-sam2[hub]'). "
            + _how_to_get(spec)
        ) from e
    try:
        path = Path(hf_hub_download(spec.hf_id, spec.checkpoint_name))
    except Exception as e:  # noqa: BLE001 - offline, DNS, 404, auth...
        raise HubUnavailableError(
            f"Could not download {spec.checkpoint_name} from the Hugging Face hub "
            f"({spec.hf_id}): {type(e).__name__}: {e}. " + _how_to_get(spec)
        ) from e
    verify_download(path, spec)
    return path


def verify_download(path, spec: ModelSpec) -> None:
    """Check a downloaded checkpoint against its content hash; remove it when it differs.

    ``hf_hub_download`` writes to a temporary ``.incomplete`` file and renames it when
    complete (atomic: a half-written file never carries the final name).  A large file
    of the hub is stored as ``blobs/<sha256>`` with the name in ``snapshots/`` linking to
    it, so the blob's name is the hash the content must have.
    """
    path = Path(path)
    blob = path.resolve()
    expected = blob.name.lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        return  # not a content-addressed blob: nothing to compare with
    actual = file_sha256(blob)
    if actual == expected:
        return
    for p in {path, blob}:
        with contextlib.suppress(OSError):
            p.unlink()
    raise CheckpointCorruptError(
        f"The downloaded {spec.checkpoint_name} is damaged (SHA-256 {actual[:12]}… instead "
        f"of {expected[:12]}…); it was deleted. Download it again. " + _how_to_get(spec)
    )


def _how_to_get(spec: ModelSpec) -> str:
    return (
        f"Download {spec.checkpoint_name} from {spec.url} (or the Hugging Face repo "
        f"{spec.hf_id}) and pass its path as checkpoint=..., or put it in one of: "
        + ", ".join(str(d) for d in default_checkpoint_dirs())
        + f" (set {CHECKPOINT_DIR_ENV} to add a folder)."
    )


def _missing_message(spec: ModelSpec, dirs) -> str:
    where = ", ".join(str(d) for d in dirs)
    return (
        f"No SAM {spec.version} '{spec.size}' checkpoint ({spec.checkpoint_name}) found in {where}. "
        + _how_to_get(spec)
    )


def resolve_checkpoint(spec: ModelSpec, checkpoint=None, *, allow_download: bool = False) -> Path:
    """Like :func:`find_checkpoint` but raises a helpful error when nothing is found."""
    found = find_checkpoint(spec, checkpoint)
    if found is not None:
        return found
    if allow_download:
        return download_checkpoint(spec)
    raise CheckpointNotFoundError(_missing_message(spec, default_checkpoint_dirs()))


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------- building
def load_model_config(spec: ModelSpec, image_size: int | None = None):
    """The model's OmegaConf config, read from the sam2 package (no hydra globals)."""
    from omegaconf import OmegaConf

    from .llvm_guard import avoid_llvm_clash

    avoid_llvm_clash()  # before sam2/torchvision are imported (a napari viewer may exist)

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


def _to_device(net, spec: ModelSpec, dev, prec):
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
    net = _to_device(net, spec, dev, prec)
    sha = file_sha256(path) if (path is not None and hash_checkpoint) else None
    if dev.type == "cpu" and (precision or "auto").lower() == "auto":  # engine/precision.py
        from .precision import auto_cpu_precision

        prec = auto_cpu_precision(spec.name, sha, int(net.image_size))
    log.info("Loaded %s on %s (%s) from %s", spec.name, dev, prec, path or "random weights")
    return LoadedModel(net, spec, dev, prec, path, sha)
