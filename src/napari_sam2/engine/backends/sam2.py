"""SAM 2 image backend: the real model behind the :class:`Predictor` protocol."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..automatic.params import AutomaticRegion, EverythingParams
from ..automatic.postprocess import resolve_overlaps
from ..errors import DeviceMemoryError
from ..model.load import LoadedModel
from ..model.sam2_compat import check_sam2_api
from ..prompts import ObjectPrompt
from ..runtime.devices import free_device_memory, memory_advice
from ..runtime.encoder_trims import trim_encoder
from ._sam_common import SamBackendBase, packed_prompts
from .base import check_sam_input
from .sam2_automatic import sam2_candidates


def has_compiled_extension() -> bool:
    """Whether ``sam2._C`` (CUDA hole filling) is importable."""
    try:
        from sam2 import _C  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError or a broken build
        return False
    return True


class Sam2Backend(SamBackendBase):
    """Wraps ``SAM2ImagePredictor`` with explicit, cacheable embeddings.

    Hole filling/sprinkle removal of sam2 needs its compiled ``_C`` extension; it is turned
    off here (``max_hole_area=0``) so nothing warns when the extension is missing.

    What it changes on objects it did not create, and why that is safe:

    - ``_bb_feat_sizes`` is set on *this backend's own* ``SAM2ImagePredictor`` instance
      (sam2 sets it per instance in ``__init__``, hard-coded for 1024 px): nothing shared;
    - the model (``loaded.model``, built by :func:`~napari_sam2.engine.model.load.load_sam2`
      for this backend) gets the exact encoder trims of
      :mod:`~napari_sam2.engine.runtime.encoder_trims`: instance attributes (the classes
      are unchanged), idempotent, and bit-identical results (tested against the untrimmed
      model), so another user of the same model object (the video predictor, a
      fine-tuning sibling) computes the same numbers; :func:`untrim_encoder` undoes them;
    - forward pre-hooks on the encoder blocks that check this backend's cancel event (a
      no-op while no encode of this backend runs); :meth:`remove_cancel_hooks` removes them.
    """

    name = "sam2"
    supports_video = True  # SAM 2's video predictor shares this model (propagation/video.py)
    trainable = True  # fine-tuning trains copies of its mask decoder (training/train.py)
    calibrates_cpu_precision = True  # precision="auto" on the CPU (runtime/precision.py)

    def __init__(self, loaded: LoadedModel, *, mask_threshold: float = 0.0):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.loaded = loaded
        self.device = loaded.device
        self.precision = loaded.precision
        with warnings.catch_warnings():  # torch.jit.script deprecation inside sam2
            warnings.simplefilter("ignore", FutureWarning)
            self._predictor = SAM2ImagePredictor(
                loaded.model,
                mask_threshold=mask_threshold,
                max_hole_area=0.0,
                max_sprinkle_area=0.0,
            )
        check_sam2_api(self._predictor, loaded.model)
        trim_encoder(loaded.model)  # exact, idempotent: see the class docstring
        s = int(loaded.model.image_size)
        # sam2 hard-codes these for 1024 px; they must follow image_size (this instance only)
        self._predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        self.image_size = s
        self.low_res_size = s // 4
        self.mask_threshold = mask_threshold
        self._lock = threading.Lock()
        self._cancel = None  # the running encode's cancel event
        trunk = getattr(getattr(loaded.model, "image_encoder", None), "trunk", None)
        self._cancel_hooks = [  # Hiera: ~12-48 blocks per encode (removed when compiled)
            block.register_forward_pre_hook(self._check_cancel)
            for block in getattr(trunk, "blocks", ())
        ]

    def remove_cancel_hooks(self) -> None:
        """Remove the per-block cancel hooks (a compiled encoder cannot run them); an
        encode is then cancelled only between planes."""
        for handle in self._cancel_hooks:
            handle.remove()
        self._cancel_hooks = []

    def automatic_instances(
        self, region: AutomaticRegion, params: EverythingParams, *, cancel=None, progress=None
    ) -> np.ndarray:
        """SAM 2's click-grid candidates (:func:`.sam2_automatic.sam2_candidates`) on the
        region's embedding, overlaps resolved (higher predicted IoU wins)."""
        emb = region.embedding()
        cand = sam2_candidates(
            self, emb, params, edge_box=region.edge_box, cancel=cancel, progress=progress
        )
        return resolve_overlaps(cand.local_masks(), cand.scores, emb["orig_hw"], params)[0]

    def describe(self) -> dict:
        lm = self.loaded
        return {
            "backend": self.name,
            "model": lm.spec.name,
            "size": lm.spec.size,
            "version": lm.spec.version,
            "checkpoint": str(lm.checkpoint) if lm.checkpoint else None,
            "checkpoint_sha256": lm.checkpoint_sha256,
            "random_weights": lm.checkpoint is None,
            "device": str(self.device),
            "precision": self.precision,
            "image_size": self.image_size,
            "hole_filling": False,
        }

    def cache_key(self) -> tuple:
        lm = self.loaded
        return (
            self.name,
            lm.spec.name,
            # random weights (no checkpoint): this very model object
            lm.checkpoint_sha256 or (str(lm.checkpoint) if lm.checkpoint else id(lm.model)),
            str(self.device),
            self.precision,
            self.image_size,
        )

    # ------------------------------------------------------------------ encode
    @torch.inference_mode()
    def encode(self, image: np.ndarray, cancel=None, precision: str | None = None) -> dict:
        """Embed the image; ``cancel`` (a ``threading.Event``) stops it between blocks;
        ``precision`` (``fp32``/``bf16``) overrides the backend's for this call only."""
        check_sam_input(image)

        def run():
            self._predictor.set_image(image)
            feats = self._predictor._features
            return {
                "image_embed": feats["image_embed"],
                "high_res_feats": list(feats["high_res_feats"]),
                "orig_hw": tuple(int(v) for v in image.shape[:2]),
            }

        what = f"encoding a {image.shape[0]}×{image.shape[1]} plane"
        emb, seconds = self._guarded_encode(
            cancel, run, what, self._predictor.reset_predictor, precision
        )
        emb["encode_s"] = seconds
        return emb

    @torch.inference_mode()
    def encode_batch(self, images: Sequence[np.ndarray], cancel=None) -> list[dict]:
        """Embed several images in one encoder call (GPU: faster per image); each result
        equals :meth:`encode` of that image up to float rounding."""
        images = list(images)
        for image in images:
            check_sam_input(image)

        def run():
            self._predictor.set_image_batch(images)
            feats = self._predictor._features
            return [  # clone: each cached embedding owns its memory, not the batch's
                {
                    "image_embed": feats["image_embed"][i : i + 1].clone(),
                    "high_res_feats": [f[i : i + 1].clone() for f in feats["high_res_feats"]],
                    "orig_hw": tuple(int(v) for v in image.shape[:2]),
                }
                for i, image in enumerate(images)
            ]

        what = f"encoding a batch of {len(images)} planes"
        embs, seconds = self._guarded_encode(cancel, run, what, self._predictor.reset_predictor)
        for emb in embs:
            emb["encode_s"] = seconds / max(1, len(images))
        return embs

    # ----------------------------------------------------------------- predict
    def prompt_tensors(self, objects: Sequence[ObjectPrompt], hw):
        """Pack points and boxes of a batch into SAM's (B, N, 2) coords / (B, N) labels.

        Boxes become two points labelled 2 and 3 (what SAM2ImagePredictor does); shorter
        prompts are padded with label -1 ("not a point").
        """
        packed = packed_prompts(objects)
        if packed is None:
            return None
        pc, pl = packed
        coords = torch.as_tensor(pc, device=self.device)
        coords = self._predictor._transforms.transform_coords(coords, normalize=True, orig_hw=hw)
        return coords, torch.as_tensor(pl, device=self.device)

    @torch.inference_mode()
    def _decode(self, emb, objects, multimask: bool):
        hw = emb["orig_hw"]
        model = self._predictor.model
        points = self.prompt_tensors(objects, hw)
        masks_in = None
        if any(o.mask is not None for o in objects):
            masks_in = torch.stack([self.mask_to_logits(o.mask.mask) for o in objects]).to(
                self.device
            )
        sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=masks_in)
        batched = len(objects) > 1
        low_res, iou, _, obj_score = model.sam_mask_decoder(
            image_embeddings=emb["image_embed"],
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=batched,
            high_res_features=list(emb["high_res_feats"]),
        )
        full = self._predictor._transforms.postprocess_masks(low_res.float(), hw)
        masks = (full > self.mask_threshold).cpu().numpy()
        low = low_res.float().clamp(-32, 32).cpu().numpy()
        # SAM 2.1's object score logit per object (> 0: the object is there)
        obj = obj_score.float().reshape(len(objects), -1)[:, 0].cpu().numpy()
        return masks, iou.float().cpu().numpy(), low, obj

    def _out_of_memory(self, what: str) -> DeviceMemoryError:
        """The error for an out-of-memory during ``what``; cached device memory is freed
        and the model stays loaded and usable (a smaller request may fit)."""
        free_device_memory(self.device)
        lm = self.loaded
        return DeviceMemoryError(
            f"Out of memory on {self.device} while {what} with {lm.spec.name} "
            f"({self.precision}, input {self.image_size} px): "
            + memory_advice(lm.spec.size, self.device, self.precision)
            + " The model is still loaded: nothing was written."
        )
