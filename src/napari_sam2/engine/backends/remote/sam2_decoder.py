"""SAM 2's prompt encoder + mask decoder on the client (a few MB), from the server's weights.

The server exports the two modules' state dict and the few hyper-parameters that shape them
(:func:`export_decoder`); the client rebuilds them with sam2's own classes
(:func:`build_decoder`) and decodes exactly as :class:`Sam2Backend` does, so a click costs
no round trip and masks equal those of a local model on the same embeddings.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import torch

from ...errors import ModelError
from ..sam2 import Sam2Backend
from .encoder import RemoteBackend
from .errors import ServerProtocolError

PARTS = ("sam_prompt_encoder", "sam_mask_decoder")


def _plain(v):
    """OmegaConf values → JSON-able Python values."""
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if hasattr(v, "items"):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) or hasattr(v, "__iter__"):
        return [_plain(x) for x in v]
    return float(v)


def export_decoder(model) -> tuple[dict, dict]:
    """``(arrays, spec)``: float32 weights of the prompt encoder and mask decoder of a SAM 2
    model and the hyper-parameters :func:`build_decoder` needs."""
    arrays = {}
    for part in PARTS:
        for name, t in getattr(model, part).state_dict().items():
            arrays[f"{part}.{name}"] = t.detach().float().cpu().numpy()
    spec = {
        "embed_dim": int(model.sam_prompt_embed_dim),
        "image_size": int(model.image_size),
        "backbone_stride": int(model.backbone_stride),
        "use_high_res_features": bool(model.use_high_res_features_in_sam),
        "iou_prediction_use_sigmoid": bool(model.iou_prediction_use_sigmoid),
        "pred_obj_scores": bool(model.pred_obj_scores),
        "pred_obj_scores_mlp": bool(model.pred_obj_scores_mlp),
        "use_multimask_token_for_obj_ptr": bool(model.use_multimask_token_for_obj_ptr),
        "extra": _plain(model.sam_mask_decoder_extra_args or {}),
    }
    return arrays, spec


def build_decoder(arrays: dict, spec: dict, device) -> torch.nn.Module:
    """The prompt encoder + mask decoder of ``spec`` with the weights in ``arrays``."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.prompt_encoder import PromptEncoder
    from sam2.modeling.sam.transformer import TwoWayTransformer

    try:
        dim, s = int(spec["embed_dim"]), int(spec["image_size"])
        grid = s // int(spec["backbone_stride"])
        net = torch.nn.Module()
        net.sam_prompt_encoder = PromptEncoder(
            embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(s, s),
            mask_in_chans=16,
        )  # fmt: skip
        net.sam_mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=2048, num_heads=8),
            transformer_dim=dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=bool(spec["use_high_res_features"]),
            iou_prediction_use_sigmoid=bool(spec["iou_prediction_use_sigmoid"]),
            pred_obj_scores=bool(spec["pred_obj_scores"]),
            pred_obj_scores_mlp=bool(spec["pred_obj_scores_mlp"]),
            use_multimask_token_for_obj_ptr=bool(spec["use_multimask_token_for_obj_ptr"]),
            **dict(spec.get("extra") or {}),
        )
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        net.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ServerProtocolError(f"The server's decoder weights do not build: {e}") from None
    return net.to(device).eval()


class RemoteSam2Decoder(Sam2Backend):
    """The decoding half of :class:`Sam2Backend` (prompts → masks, automatic candidates)
    around a decoder built by :func:`build_decoder`; it has no image encoder."""

    def __init__(self, net, image_size: int, device, *, mask_threshold: float = 0.0):
        from sam2.utils.transforms import SAM2Transforms

        # no Sam2Backend.__init__: there is no image encoder here, only the decoding state
        self.device = torch.device(device)
        self.precision = "fp32"
        self.image_size = int(image_size)
        self.low_res_size = self.image_size // 4
        self.mask_threshold = mask_threshold
        self._lock = threading.Lock()
        self._cancel = None
        transforms = SAM2Transforms(
            resolution=self.image_size, mask_threshold=mask_threshold,
            max_hole_area=0.0, max_sprinkle_area=0.0,
        )  # fmt: skip
        self._predictor = SimpleNamespace(model=net, _transforms=transforms)

    def encode(self, image, cancel=None):  # pragma: no cover - RemoteSam2Backend encodes
        raise ModelError("The remote decoder does not encode: the server does.")

    def encode_batch(self, images, cancel=None):  # pragma: no cover - as encode
        raise ModelError("The remote decoder does not encode: the server does.")


class RemoteSam2Backend(RemoteBackend, RemoteSam2Decoder):
    """SAM 2 on a server: its encodes come from there, masks are decoded here."""
