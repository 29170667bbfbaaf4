"""Loading SAM 2 through Hugging Face transformers (the optional ``transformers`` extra).

A model comes from a local folder in the transformers layout (``config.json`` +
``*.safetensors``), a hub id such as ``facebook/sam2.1-hiera-tiny`` found in the local
Hugging Face cache (nothing is downloaded unless ``allow_download=True``), an official
``.pt`` checkpoint (converted in memory with :mod:`napari_sam2.engine.model.convert`), or random
weights (plumbing checks only).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    MissingExtraError,
)
from ..runtime import llvm_guard
from ..runtime.allocator import prefer_huge_pages
from ..runtime.devices import resolve_device, resolve_precision
from .checkpoints import file_sha256
from .convert import hf_config_dict, official_to_hf
from .load import to_device
from .registry import ARCH, get_spec
from .state_dict import check_state_dict, guess_version, read_state_dict

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'napari-sam2[transformers]'"
MIN_VERSION = (5, 0)  # tested with 5.24; Sam2Model appeared in 4.56


def import_transformers():
    """The ``transformers`` module, or :class:`MissingExtraError` saying how to get it."""

    llvm_guard.avoid_llvm_clash()  # before transformers imports torchvision (a viewer may exist)
    try:
        import transformers
        from transformers import Sam2Config, Sam2Model, Sam2Processor  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(
            "The transformers backend needs Hugging Face transformers with SAM 2 support "
            f"(>= {'.'.join(map(str, MIN_VERSION))}): {INSTALL_HINT} (or pip install -U "
            f"transformers). Without it, use backend='sam2' or 'classical'. ({e})"
        ) from e
    return transformers


@dataclass
class LoadedHF:
    """A transformers ``Sam2Model`` with its processor and where it came from."""

    model: object
    processor: object
    device: object
    precision: str
    size: str | None
    version: str
    image_size: int
    source: str | None  # folder, hub id or .pt path; None for random weights
    sha256: str | None

    @property
    def name(self) -> str:
        return f"sam{self.version}-{self.size or 'custom'}"


def _sha256_files(files) -> str | None:
    files = [Path(f) for f in files if Path(f).is_file()]
    if not files:
        return None
    h = hashlib.sha256()
    for f in sorted(files):
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _size_of(config) -> str | None:

    bb = config.vision_config.backbone_config
    arch = (int(bb.hidden_size), int(sum(bb.blocks_per_stage)))
    return next((s for s, a in ARCH.items() if a == arch), None)


def set_image_size(config, size: int) -> None:
    """Make a ``Sam2Config`` take ``size`` px input (feature sizes follow)."""
    if size % 32:
        raise ValueError(f"image_size must be a multiple of 32, got {size}.")
    config.vision_config.backbone_config.image_size = [size, size]
    config.vision_config.backbone_feature_sizes = [[size // d] * 2 for d in (4, 8, 16)]
    config.prompt_encoder_config.image_size = size


def make_processor(size: int):
    """``Sam2Processor`` for ``size`` px input: non aspect-preserving bilinear resize and
    ImageNet mean/std, as sam2's own transforms."""
    from transformers import Sam2ImageProcessor, Sam2Processor

    ip = Sam2ImageProcessor(
        size={"height": size, "width": size}, mask_size={"height": size // 4, "width": size // 4}
    )
    return Sam2Processor(image_processor=ip)


def _hub_files(repo_id: str) -> tuple[Path | None, list[Path]]:
    """The cached snapshot folder of ``repo_id`` and its safetensors files (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None, []
    p = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(p, str):
        return None, []
    folder = Path(p).parent
    return folder, sorted(folder.glob("*.safetensors"))


_FILES = (".pt", ".pth", ".safetensors", ".json", ".bin")


def _resolve(checkpoint, spec, allow_download: bool) -> tuple[str, str]:
    """(kind, where): kind is ``folder``, ``pt`` or ``hub``."""
    if checkpoint is None:
        return "hub", spec.hf_id
    p = Path(checkpoint).expanduser()
    if p.is_dir():
        return "folder", str(p)
    if p.is_file():
        return "pt", str(p)
    text = str(checkpoint)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")) and p.suffix not in _FILES:
        return "hub", text  # owner/name
    raise CheckpointNotFoundError(
        f"Checkpoint {text!r} does not exist: give a transformers folder, a hub id in the local "
        "Hugging Face cache (e.g. facebook/sam2.1-hiera-tiny) or an official .pt file."
    )


def _from_pt(path: str, image_size, spec):
    from transformers import Sam2Config, Sam2Model

    sd = read_state_dict(path)
    check_state_dict(sd, spec, path)
    fields = hf_config_dict(spec.size, guess_version(sd), image_size)
    fields.pop("model_type")
    model = Sam2Model(Sam2Config(**fields))
    missing, _ = model.load_state_dict(official_to_hf(sd), strict=False)
    if missing:
        raise CheckpointMismatchError(
            f"Checkpoint {path!r} lacks {len(missing)} weights of the transformers model "
            f"(e.g. {missing[0]!r})."
        )
    return (
        model,
        make_processor(int(fields["prompt_encoder_config"]["image_size"])),
        (
            guess_version(sd),
            file_sha256(path),
        ),
    )


def _from_pretrained(where: str, kind: str, image_size, allow_download: bool, version: str):
    from transformers import Sam2Config, Sam2Model, Sam2Processor

    local = not allow_download
    if kind == "hub":
        folder, files = _hub_files(where)
        if folder is None and local:
            raise CheckpointNotFoundError(
                f"{where!r} is not in the local Hugging Face cache and downloads are off. "
                f"Download it once (huggingface-cli download {where}), pass "
                "allow_download=True, give a local folder, or convert an official .pt "
                "checkpoint with `napari-sam2 convert`."
            )
    else:
        files = sorted(Path(where).glob("*.safetensors"))
        if not (Path(where) / "config.json").is_file() or not files:
            raise CheckpointNotFoundError(
                f"{where!r} is not a transformers SAM 2 folder (it needs config.json and "
                "model.safetensors); convert an official .pt with `napari-sam2 convert`."
            )
    try:
        config = Sam2Config.from_pretrained(where, local_files_only=local)
        if image_size is not None:
            set_image_size(config, int(image_size))
        model = Sam2Model.from_pretrained(where, config=config, local_files_only=local)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointCorruptError(
            f"transformers could not load SAM 2 from {where!r} ({type(e).__name__}: "
            f"{str(e)[:300]})."
        ) from e
    size = int(config.prompt_encoder_config.image_size)
    processor = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # no processor files
        processor = Sam2Processor.from_pretrained(where, local_files_only=local)
    if processor is None or processor.image_processor.size.get("height") != size:
        processor = make_processor(size)
    return model, processor, (_version_of(files, version), _sha256_files(files))


def _version_of(files, default: str) -> str:
    """SAM 2.1 has the occlusion embedding; an image-only save (no video keys) can't tell."""
    from safetensors import safe_open

    keys: set = set()
    for f in files:
        with safe_open(str(f), "pt") as fh:
            keys.update(fh.keys())
    if "occlusion_spatial_embedding_parameter" in keys:
        return "2.1"
    return "2.0" if any(k.startswith("memory_") for k in keys) else default


def load_transformers(
    checkpoint=None,
    *,
    model: str = "tiny",
    version: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    random_weights: bool = False,
    allow_download: bool = False,
) -> LoadedHF:
    """Build a transformers ``Sam2Model`` (see the module docstring for ``checkpoint``)."""
    prefer_huge_pages()  # before torch is imported: see runtime/allocator.py for why here
    import_transformers()

    spec = get_spec(model, version)
    dev = resolve_device(device)
    prec = resolve_precision(dev, precision)
    source = None
    if random_weights:
        from transformers import Sam2Config, Sam2Model

        fields = hf_config_dict(spec.size, spec.version, image_size)
        fields.pop("model_type")
        net = Sam2Model(Sam2Config(**fields))
        proc = make_processor(int(fields["prompt_encoder_config"]["image_size"]))
        ver, sha = spec.version, None
    else:
        kind, source = _resolve(checkpoint, spec, allow_download)
        if kind == "pt":
            net, proc, (ver, sha) = _from_pt(source, image_size, spec)
        else:
            net, proc, (ver, sha) = _from_pretrained(
                source, kind, image_size, allow_download, spec.version
            )
    size = _size_of(net.config)
    net = to_device(net, spec if size is None else get_spec(size, ver), dev, prec)
    log.info("Loaded transformers SAM %s %s on %s (%s)", ver, size, dev, source or "random")
    return LoadedHF(
        net,
        proc,
        dev,
        prec,
        size,
        ver,
        int(net.config.prompt_encoder_config.image_size),
        source,
        sha,
    )
