"""Convert SAM 2 checkpoints: official ``.pt`` ↔ Hugging Face transformers folder.

The official layout is what ``build_sam2`` loads: a ``torch.save`` dict whose ``"model"``
entry is the state dict of ``SAM2Base`` (image encoder, prompt encoder, mask decoder and
the video memory modules).  The transformers layout is a folder with ``config.json``
(a ``Sam2Config``) and ``model.safetensors``, loadable with
``transformers.Sam2Model.from_pretrained``.

The key names are mapped by rules written from the two documented module trees (see
docs/models.md, "Converting checkpoints").  The video memory weights travel too, under the
names transformers' ``Sam2VideoModel`` uses (``Sam2Model`` ignores them on load), so a
``.pt → folder → .pt`` round trip gives back every tensor unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import CheckpointCorruptError, CheckpointMismatchError, CheckpointNotFoundError
from .load import build_model, load_model_config
from .registry import get_spec
from .state_dict import guess_size, guess_version, read_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SHARED_PE = "shared_image_embedding.positional_embedding"  # a copy of the prompt encoder's
_PROMPT_PE = "prompt_encoder.shared_embedding.positional_embedding"
_POINT_EMBED = "prompt_encoder.point_embed.weight"

# Whole-name prefixes (official → transformers), the longest first.
_PREFIXES = (
    ("image_encoder.trunk.", "vision_encoder.backbone."),
    ("image_encoder.neck.", "vision_encoder.neck."),
    ("sam_prompt_encoder.", "prompt_encoder."),
    ("sam_mask_decoder.", "mask_decoder."),
    ("obj_ptr_tpos_proj.", "temporal_positional_encoding_projection_layer."),
    ("obj_ptr_proj.", "object_pointer_proj."),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("no_obj_ptr", "no_object_pointer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
)
# Module names inside the trees (official → transformers); plain substring renames.
_PARTS = (
    (".patch_embed.proj.", ".patch_embed.projection."),
    (".pe_layer.positional_encoding_gaussian_matrix", ".shared_embedding.positional_embedding"),
    (".mask_downscaling.0.", ".mask_embed.conv1."),
    (".mask_downscaling.1.", ".mask_embed.layer_norm1."),
    (".mask_downscaling.3.", ".mask_embed.conv2."),
    (".mask_downscaling.4.", ".mask_embed.layer_norm2."),
    (".mask_downscaling.6.", ".mask_embed.conv3."),
    (".output_upscaling.0.", ".upscale_conv1."),
    (".output_upscaling.1.", ".upscale_layer_norm."),
    (".output_upscaling.3.", ".upscale_conv2."),
    ("memory_encoder.out_proj.", "memory_encoder.projection."),
    ("memory_encoder.pix_feat_proj.", "memory_encoder.feature_projection."),
    ("memory_encoder.fuser.", "memory_encoder.memory_fuser."),
    (".dwconv.", ".depthwise_conv."),
    (".pwconv1.", ".pointwise_conv1."),
    (".pwconv2.", ".pointwise_conv2."),
    (".gamma", ".scale"),
    (".out_proj.", ".o_proj."),
)
# MLPs of three layers: official layers.0/1/2 → proj_in / layers.0 / proj_out
_MLP3 = (
    r"(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head|object_pointer_proj)"
)
_NORM = re.compile(r"\.norm(\d*|_final_attn)\.")
_HF_NORM = re.compile(r"\.layer_norm(\d*|_final_attn)\.")
_NECK = re.compile(r"(neck\.convs\.\d+)\.conv\.")
_HF_NECK = re.compile(r"(neck\.convs\.\d+)\.(weight|bias)$")
_DOWN = re.compile(r"mask_downsampler\.encoder\.(\d+)\.")
_HF_DOWN = re.compile(r"mask_downsampler\.layers\.(\d+)\.(conv|layer_norm)\.")


def _swap(key: str, pairs, reverse: bool) -> str:
    for a, b in pairs:
        src, dst = (b, a) if reverse else (a, b)
        key = key.replace(src, dst)
    return key


def _prefix(key: str, reverse: bool) -> str:
    for a, b in _PREFIXES:
        src, dst = (b, a) if reverse else (a, b)
        if key.startswith(src):
            return dst + key[len(src) :]
    return key


def official_key_to_hf(key: str, downsampler_last: int = 12) -> str:
    """One official key → its transformers name (``downsampler_last``: the index of the
    memory mask downsampler's final 1×1 conv in the official ``nn.Sequential``)."""
    k = _swap(_prefix(key, False), _PARTS, False)
    k = _NORM.sub(r".layer_norm\1.", k)
    k = _NECK.sub(r"\1.", k)
    k = re.sub(r"\.mlp\.layers\.0\.", ".mlp.proj_in.", k)
    k = re.sub(r"\.mlp\.layers\.1\.", ".mlp.proj_out.", k)
    k = re.sub(
        _MLP3 + r"\.layers\.(\d)\.",
        lambda m: m[1] + "." + ("proj_in", "layers.0", "proj_out")[int(m[2])] + ".",
        k,
    )

    def down(m):
        i = int(m[1])
        if i == downsampler_last:
            return "mask_downsampler.final_conv."
        return f"mask_downsampler.layers.{i // 3}." + ("conv." if i % 3 == 0 else "layer_norm.")

    return _DOWN.sub(down, k)


def hf_key_to_official(key: str, downsampler_layers: int = 4) -> str:
    """The inverse of :func:`official_key_to_hf` (``downsampler_layers``: conv + norm +
    activation blocks before the memory mask downsampler's final conv)."""
    k = key.replace(
        "mask_downsampler.final_conv.", f"mask_downsampler.encoder.{3 * downsampler_layers}."
    )
    k = _HF_DOWN.sub(lambda m: f"mask_downsampler.encoder.{3 * int(m[1]) + (m[2] != 'conv')}.", k)
    k = re.sub(
        _MLP3 + r"\.(proj_in|layers\.0|proj_out)\.",
        lambda m: m[1] + ".layers." + str(("proj_in", "layers.0", "proj_out").index(m[2])) + ".",
        k,
    )
    k = re.sub(r"\.mlp\.proj_in\.", ".mlp.layers.0.", k)
    k = re.sub(r"\.mlp\.proj_out\.", ".mlp.layers.1.", k)
    k = _HF_NECK.sub(r"\1.conv.\2", k)
    k = _swap(k, _PARTS, True)  # before the norms: mask_embed.layer_norm1 is a renamed part
    return _prefix(_HF_NORM.sub(r".norm\1.", k), True)


def official_to_hf(state_dict: dict) -> dict:
    """Official state dict → transformers state dict (same tensors, new names)."""
    idx = [int(m[1]) for k in state_dict if (m := _DOWN.search(k))]
    last = max(idx) if idx else -1
    out, points = {}, {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight", key)
        if m:
            points[int(m[1])] = value
            continue
        new = official_key_to_hf(key, last)
        if new in out:
            raise CheckpointMismatchError(
                f"Two checkpoint keys map to {new!r}: not a SAM 2 layout."
            )
        out[new] = value
    if points:  # four (1, C) embeddings → one (4, C) table
        import torch

        out[_POINT_EMBED] = torch.cat([points[i] for i in sorted(points)], 0)
    if _PROMPT_PE in out:
        out[SHARED_PE] = out[_PROMPT_PE].clone()  # safetensors refuses shared storage
    return out


def hf_to_official(state_dict: dict) -> dict:
    """Transformers state dict → official state dict."""
    n_down = len({m[1] for k in state_dict if (m := _HF_DOWN.search(k))})
    out = {}
    for key, value in state_dict.items():
        if key == SHARED_PE:
            continue  # duplicate of the prompt encoder's matrix
        if key == _POINT_EMBED:
            for i in range(value.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = value[i : i + 1].clone()
            continue
        out[hf_key_to_official(key, n_down)] = value
    return out


# ----------------------------------------------------------------------- configs
def hf_config_dict(model: str = "tiny", version: str | None = None, image_size=None) -> dict:
    """The ``Sam2Config`` fields of a registry model, read from sam2's own YAML config."""

    spec = get_spec(model, version)
    cfg = load_model_config(spec, image_size).model
    trunk, neck = _with_defaults(cfg.image_encoder.trunk), cfg.image_encoder.neck
    s = int(cfg.image_size)
    e, h, n_stages = int(trunk["embed_dim"]), int(trunk["num_heads"]), len(trunk["stages"])
    extra = cfg.get("sam_mask_decoder_extra_args") or {}
    return {
        "model_type": "sam2",
        "vision_config": {
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": e,
                "num_attention_heads": h,
                "image_size": [s, s],
                "blocks_per_stage": [int(x) for x in trunk["stages"]],
                "embed_dim_per_stage": [e * 2**i for i in range(n_stages)],
                "num_attention_heads_per_stage": [h * 2**i for i in range(n_stages)],
                "window_size_per_stage": [int(x) for x in trunk["window_spec"]],
                "global_attention_blocks": [int(x) for x in trunk["global_att_blocks"]],
                "window_positional_embedding_background_size": [
                    int(x) for x in trunk["window_pos_embed_bkg_spatial_size"]
                ],
            },
            "backbone_channel_list": [int(x) for x in neck.backbone_channel_list],
            "backbone_feature_sizes": [[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
            "fpn_hidden_size": int(neck.d_model),
            "fpn_top_down_levels": [int(x) for x in neck.fpn_top_down_levels],
        },
        "prompt_encoder_config": {"model_type": "sam2_prompt_encoder", "image_size": s},
        "mask_decoder_config": {
            "model_type": "sam2_mask_decoder",
            "dynamic_multimask_via_stability": bool(
                extra.get("dynamic_multimask_via_stability", True)
            ),
            "dynamic_multimask_stability_delta": float(
                extra.get("dynamic_multimask_stability_delta", 0.05)
            ),
            "dynamic_multimask_stability_thresh": float(
                extra.get("dynamic_multimask_stability_thresh", 0.98)
            ),
        },
    }


def _with_defaults(trunk) -> dict:
    """The Hiera trunk's YAML settings completed with the class defaults (the base_plus
    YAML gives only the width and heads)."""
    import inspect

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    cls = get_class(trunk["_target_"])
    out = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    out.update(OmegaConf.to_container(trunk, resolve=True))
    return out


def config_image_size(config: dict) -> int:
    """The input size of a transformers SAM 2 config (``config.json`` as a dict)."""
    size = config.get("prompt_encoder_config", {}).get("image_size", 1024)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


# ---------------------------------------------------------------------- files
def read_hf_folder(folder) -> tuple[dict, dict]:
    """(config dict, state dict) of a transformers folder (``*.safetensors`` shards)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    files = sorted(folder.glob("*.safetensors"))
    if not cfg_path.is_file() or not files:
        raise CheckpointNotFoundError(
            f"{str(folder)!r} is not a transformers SAM 2 folder: it needs {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}. Convert an official checkpoint with `napari-sam2 convert`."
        )
    try:
        config = json.loads(cfg_path.read_text())
        sd: dict = {}
        for f in files:
            sd.update(load_file(str(f)))
    except Exception as e:  # noqa: BLE001 - bad JSON, truncated safetensors...
        raise CheckpointCorruptError(
            f"Cannot read the transformers folder {str(folder)!r} ({type(e).__name__}: "
            f"{str(e)[:200]})."
        ) from e
    if not str(config.get("model_type", "")).startswith("sam2"):
        raise CheckpointMismatchError(
            f"{str(folder)!r} holds a {config.get('model_type')!r} model, not SAM 2."
        )
    return config, sd


def pt_to_hf(src, dst, *, image_size: int | None = None) -> Path:
    """Official checkpoint file ``src`` → transformers folder ``dst`` (created)."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    sd = read_state_dict(src)
    size = guess_size(sd)
    if size is None:
        raise CheckpointMismatchError(
            f"{str(src)!r} does not look like a SAM 2 checkpoint (no Hiera trunk of a known size)."
        )
    config = hf_config_dict(size, guess_version(sd), image_size)
    config["architectures"] = ["Sam2Model"]
    hf = {k: v.detach().contiguous() for k, v in official_to_hf(sd).items()}
    dst.mkdir(parents=True, exist_ok=True)
    save_file(hf, str(dst / WEIGHTS_FILE), metadata={"format": "pt"})
    (dst / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    _write_processor_config(dst, config_image_size(config))
    return dst


def _write_processor_config(dst: Path, size: int) -> None:
    """What ``Sam2Processor.from_pretrained`` reads: the image processor's settings."""
    pre = {
        "image_processor_type": "Sam2ImageProcessor",
        "processor_class": "Sam2Processor",
        "size": {"height": size, "width": size},
        "mask_size": {"height": size // 4, "width": size // 4},
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
    }
    (dst / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")


def hf_to_pt(src, dst) -> Path:
    """Transformers folder ``src`` → official checkpoint file ``dst``."""
    import torch

    _, hf = read_hf_folder(src)
    sd = hf_to_official(hf)
    size = guess_size(sd)
    if size is None:
        raise CheckpointMismatchError(f"{str(src)!r} does not hold a SAM 2 Hiera image encoder.")
    expected = build_model(get_spec(size, guess_version(sd))).state_dict().keys()
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise CheckpointMismatchError(
            f"{str(src)!r} lacks {len(missing)} weights of the official layout (e.g. "
            f"{missing[0]!r}): it holds only the image model (a plain Sam2Model save), while "
            "the official checkpoint also carries the video memory modules. Use this folder "
            "with backend='transformers' instead."
        )
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd}, dst)
    return dst


def convert(src, dst, *, image_size: int | None = None) -> Path:
    """Either direction, chosen from ``src``: a file → folder, a folder → ``.pt`` file."""
    src = Path(src).expanduser()
    if src.is_dir():
        return hf_to_pt(src, dst)
    if src.is_file():
        return pt_to_hf(src, dst, image_size=image_size)
    raise CheckpointNotFoundError(f"{str(src)!r} does not exist.")
