"""SAM 2 through Hugging Face transformers (``Sam2Model`` + ``Sam2Processor``).

The same protocol, prompts and embedding dict as :class:`~.sam2.Sam2Backend`, so
the segmenter's caches, labels writing and projection propagation work unchanged:

- ``encode``: ``Sam2Processor`` (bilinear resize to the model's square input, ImageNet
  mean/std) → ``Sam2Model.get_image_embeddings``; the three feature levels are cached.
- ``predict``: ``Sam2Model(image_embeddings=..., input_points, input_labels,
  input_masks)``; coordinates go through the processor; ``post_process_masks`` brings the
  low-resolution logits back to the plane.

A box is given as its two corners labelled 2 and 3 inside ``input_points`` — the tokens
sam2's own predictor builds, so both backends see identical prompts (also when objects
with and without boxes share one batch).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import DeviceMemoryError
from ..prompts import ObjectPrompt
from ..runtime.devices import free_device_memory, memory_advice
from ._sam_common import SamBackendBase, packed_prompts
from .base import check_sam_input


class TransformersBackend(SamBackendBase):
    """Wraps a :class:`~napari_sam2.engine.model.hf.LoadedHF` model."""

    name = "transformers"

    def __init__(self, loaded, *, mask_threshold: float = 0.0):
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.device = loaded.device
        self.precision = loaded.precision
        self.image_size = int(loaded.image_size)
        self.low_res_size = self.image_size // 4
        self.mask_threshold = mask_threshold
        self._lock = threading.Lock()
        self._cancel = None
        for block in self.model.vision_encoder.backbone.blocks:
            block.register_forward_pre_hook(self._check_cancel)

    def describe(self) -> dict:
        import transformers

        lm = self.loaded
        return {
            "backend": self.name,
            "model": lm.name,
            "size": lm.size,
            "version": lm.version,
            "checkpoint": lm.source,
            "checkpoint_sha256": lm.sha256,
            "random_weights": lm.source is None,
            "device": str(self.device),
            "precision": self.precision,
            "image_size": self.image_size,
            "transformers": transformers.__version__,
        }

    def cache_key(self) -> tuple:
        lm = self.loaded
        return (
            self.name,
            lm.name,
            lm.sha256 or (lm.source if lm.source else id(self.model)),
            str(self.device),
            self.precision,
            self.image_size,
        )

    # ------------------------------------------------------------------ encode
    @torch.inference_mode()
    def encode(self, image: np.ndarray, cancel=None, precision: str | None = None) -> dict:
        """Embed a float32 (H, W, 3) image in [0, 1]; ``cancel`` stops between blocks;
        ``precision`` overrides the backend's for this call only (calibration)."""
        check_sam_input(image)

        def run():
            pixels = self.processor(images=image, do_rescale=False, return_tensors="pt")
            feats = self.model.get_image_embeddings(
                pixels["pixel_values"].to(self.device, torch.float32)
            )
            return {
                "image_embed": feats[-1],
                "high_res_feats": list(feats[:-1]),
                "orig_hw": tuple(int(v) for v in image.shape[:2]),
            }

        what = f"encoding a {image.shape[0]}×{image.shape[1]} plane"
        emb, seconds = self._guarded_encode(cancel, run, what, precision=precision)
        emb["encode_s"] = seconds
        return emb

    # ----------------------------------------------------------------- predict
    def _prompts(self, objects: Sequence[ObjectPrompt], hw):
        """Processor inputs: points (1, B, N, 2) in x, y and labels (1, B, N).

        Boxes are two corner points labelled 2 and 3, before the clicks; shorter prompts
        are padded with label -1 ("not a point"), exactly as the sam2 backend does.
        """
        packed = packed_prompts(objects, np.int64)
        if packed is None:
            return {}
        pts, lab = packed
        enc = self.processor(
            original_sizes=[list(hw)],
            input_points=[pts.tolist()],
            input_labels=[lab.tolist()],
            return_tensors="pt",
        )
        return {
            "input_points": enc["input_points"].to(self.device),
            "input_labels": enc["input_labels"].to(self.device),
        }

    @torch.inference_mode()
    def _decode(self, emb, objects, multimask: bool):
        hw = emb["orig_hw"]
        kwargs = self._prompts(objects, hw)
        if any(o.mask is not None for o in objects):
            masks = torch.stack([self.mask_to_logits(o.mask.mask) for o in objects])
            kwargs["input_masks"] = masks.to(self.device)
        feats = [*emb["high_res_feats"], emb["image_embed"]]
        if "input_masks" in kwargs:
            # transformers takes one mask per *image*: each object becomes its own image
            # of the batch (the embedding is expanded, not copied), as sam2's repeat_image
            n = len(objects)
            feats = [f.expand(n, *f.shape[1:]) for f in feats]
            kwargs = {k: v.transpose(0, 1) if k != "input_masks" else v for k, v in kwargs.items()}
        if "input_points" in kwargs:
            out = self.model(image_embeddings=feats, multimask_output=multimask, **kwargs)
            low_res, iou = out.pred_masks.flatten(0, 1).float(), out.iou_scores.flatten(0, 1)
        else:
            low_res, iou = self._decode_mask_only(feats, kwargs["input_masks"], multimask)
        full = self.processor.post_process_masks(
            [low_res.cpu()], [list(hw)], mask_threshold=self.mask_threshold, binarize=False
        )[0]
        masks = (full > self.mask_threshold).numpy()
        iou = iou.float().cpu().numpy()
        return masks, iou, low_res.clamp(-32, 32).cpu().numpy()

    def _decode_mask_only(self, feats, masks, multimask: bool):
        """Mask prompts without points or boxes: no sparse token at all, as sam2's image
        predictor does (``Sam2Model.forward`` would add a "not a point" token here)."""
        m = self.model
        dense = m.prompt_encoder.mask_embed(masks.to(feats[-1].dtype))  # (B, C, h, w)
        sparse = feats[-1].new_zeros((dense.shape[0], 1, 0, m.prompt_encoder.hidden_size))
        low_res, iou, _, _ = m.mask_decoder(
            image_embeddings=feats[-1],
            image_positional_embeddings=m.get_image_wide_positional_embeddings().expand(
                dense.shape[0], -1, -1, -1
            ),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=feats[:-1],
        )
        return low_res.flatten(0, 1).float(), iou.flatten(0, 1)

    def _out_of_memory(self, what: str) -> DeviceMemoryError:
        free_device_memory(self.device)
        lm = self.loaded
        return DeviceMemoryError(
            f"Out of memory on {self.device} while {what} with {lm.name} via transformers "
            f"({self.precision}, input {self.image_size} px): "
            + memory_advice(lm.size, self.device, self.precision)
            + " The model is still loaded: nothing was written."
        )
