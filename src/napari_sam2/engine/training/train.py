"""The training side of fine-tuning: copies of SAM 2's mask decoder (and prompt encoder),
their optimiser, SAM's loss, and the decoder run on cached embeddings exactly as the
inference backend runs it (same prompt packing, same multimask rule, same upsampling)."""

from __future__ import annotations

import copy

import numpy as np

from ..backends.base import SamFeatures
from . import data as fd
from .annotator import corrective_click, iou

FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT = 20.0, 1.0, 1.0  # SAM's loss weights
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


class Trainer:
    """Copies of the decoder (and prompt encoder) of ``model``, their optimiser and loss."""

    def __init__(self, backend, model, train_pe: bool, lr: float, n_corr: int):
        import torch

        self.backend = backend
        self.dec = copy.deepcopy(model.sam_mask_decoder)
        self.pe = copy.deepcopy(model.sam_prompt_encoder)
        self.train_pe = bool(train_pe)
        self.n_corr = max(int(n_corr), 0)
        params = []
        for name, p in self.dec.named_parameters():
            # conv_s0/conv_s1 project the encoder's features (already applied in the cache)
            p.requires_grad_(not name.startswith(("conv_s0", "conv_s1")))
            if p.requires_grad:
                params.append(p)
        for p in self.pe.parameters():
            p.requires_grad_(self.train_pe)
            if self.train_pe:
                params.append(p)
        self.params = params
        self._pe_cache = None
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    # -------------------------------------------------------------- forward
    def _dense_pe(self):
        """The image positional encoding (a fixed buffer): computed once."""
        if self._pe_cache is None:
            import torch

            with torch.no_grad():
                self._pe_cache = self.pe.get_dense_pe()
        return self._pe_cache

    def forward(self, emb, prompts, multimask: bool):
        """Low-res logits (B, C, s/4, s/4) and predicted IoUs (B, C), as inference decodes."""
        emb = SamFeatures.of(emb)
        pts = self.backend.prompt_tensors(prompts, emb.orig_hw)
        sparse, dense = self.pe(points=pts, boxes=None, masks=None)
        low, iou, _, _ = self.dec(
            image_embeddings=emb.image_embed,
            image_pe=self._dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=True,
            high_res_features=list(emb.high_res_feats),
        )
        return low, iou

    def predict_masks(self, emb, prompts, hw) -> list[np.ndarray]:
        """Inference (no grad, eval mode): the best candidate of each prompt, at ``hw``."""
        import torch
        import torch.nn.functional as F

        out: list = [None] * len(prompts)
        self.dec.eval()
        with torch.no_grad():
            for mm in (True, False):
                idx = [i for i, p in enumerate(prompts) if p.single_point == mm]
                if not idx:
                    continue
                low, iou = self.forward(emb, [prompts[i] for i in idx], mm)
                best = iou.argmax(dim=1)
                low = low[torch.arange(len(idx)), best][:, None]
                full = F.interpolate(low.float(), hw, mode="bilinear", align_corners=False)
                masks = (full[:, 0] > 0).cpu().numpy()
                for j, i in enumerate(idx):
                    out[i] = masks[j]
        return out

    def step(self, planes, batch, rng) -> float:
        """One optimiser step on a batch of objects of one plane; returns the loss."""
        import torch

        plane = planes[batch[0].plane]
        emb = plane.embedding
        gts = [fd.object_mask(plane, o) for o in batch]
        prompts = [fd.random_first_prompt(rng, m) for m in gts]
        n_corr = rng.integers(0, self.n_corr + 1, len(batch)) if self.n_corr else [0] * len(batch)
        for r in range(int(max(n_corr, default=0))):
            idx = [i for i in range(len(batch)) if n_corr[i] > r]
            masks = self.predict_masks(emb, [prompts[i] for i in idx], plane.hw)
            for i, m in zip(idx, masks, strict=True):
                if not np.array_equal(m, gts[i]):
                    rc, positive = corrective_click(m, gts[i])
                    prompts[i] = fd.add_click(prompts[i], rc, positive)
        self.dec.train()
        self.pe.train(self.train_pe)
        losses = []
        for mm in (True, False):
            idx = [i for i, p in enumerate(prompts) if p.single_point == mm]
            if idx:
                low, iou = self.forward(emb, [prompts[i] for i in idx], mm)
                targets = [loss_target(gts[i], self.backend.image_size) for i in idx]
                losses.append(_loss(low, iou, targets) * len(idx))
        loss = sum(losses) / len(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return float(loss.detach())

    def validate(self, planes, objects, chunk: int = 16) -> dict:
        """Validation mIoU of the evaluation's first prompts (the IoU of click 1), decoded
        ``chunk`` objects at a time (bounded memory on large planes)."""
        ious: dict[str, list] = {"point": [], "box": []}
        for p in sorted({o.plane for o in objects}):
            objs = [o for o in objects if o.plane == p]
            for i in range(0, len(objs), chunk):
                gts = [fd.object_mask(planes[p], o) for o in objs[i : i + chunk]]
                first = [fd.eval_first_prompts(m) for m in gts]
                for kind, got in ious.items():
                    prompts = [f[kind] for f in first]
                    masks = self.predict_masks(planes[p].embedding, prompts, planes[p].hw)
                    got += [iou(m, g) for m, g in zip(masks, gts, strict=True)]
        return {f"val_{k}": (round(float(np.mean(v)), 6) if v else None) for k, v in ious.items()}

    # -------------------------------------------------------------- weights
    def state(self) -> dict:
        sd = {f"sam_mask_decoder.{k}": v for k, v in self.dec.state_dict().items()}
        if self.train_pe:
            sd |= {f"sam_prompt_encoder.{k}": v for k, v in self.pe.state_dict().items()}
        return {k: v.detach().cpu().clone() for k, v in sd.items()}

    def load(self, state: dict) -> None:
        for prefix, mod in (("sam_mask_decoder.", self.dec), ("sam_prompt_encoder.", self.pe)):
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if part:
                mod.load_state_dict(part)

    def full_state_dict(self, model) -> dict:
        """The base model's state dict with the trained modules' weights, on the CPU."""
        sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        sd.update(self.state())
        return sd


def loss_target(mask: np.ndarray, size: int) -> np.ndarray:
    """The object's mask at the loss resolution: the plane's, or (planes larger than the
    model's input) shrunk by nearest sampling so that its longer side is ``size``."""
    h, w = mask.shape
    scale = min(1.0, size / max(h, w))
    if scale == 1.0:
        return mask
    rows = ((np.arange(round(h * scale)) + 0.5) / scale).astype(int)
    cols = ((np.arange(round(w * scale)) + 0.5) / scale).astype(int)
    return mask[np.ix_(rows, cols)]


def _loss(low, iou_pred, targets):
    """SAM's loss for one group: focal + dice on the (best) mask, MSE on the IoU."""
    import torch
    import torch.nn.functional as F

    total = 0.0
    for j, gt in enumerate(targets):
        h, w = gt.shape
        t = torch.from_numpy(gt).to(low.device, torch.float32)
        logits = F.interpolate(
            low[j : j + 1].float(), (h, w), mode="bilinear", align_corners=False
        )[0]
        t = t.expand_as(logits)
        p = torch.sigmoid(logits)
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        alpha = FOCAL_ALPHA * t + (1 - FOCAL_ALPHA) * (1 - t)
        focal = (alpha * ce * (1 - p_t) ** FOCAL_GAMMA).mean(dim=(1, 2))
        dice = 1 - (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
        mask_loss = FOCAL_WEIGHT * focal + DICE_WEIGHT * dice  # (C,)
        with torch.no_grad():
            pred = logits > 0
            inter = (pred & (t > 0.5)).sum((1, 2)).float()
            union = (pred | (t > 0.5)).sum((1, 2)).float().clamp(min=1)
            true_iou = inter / union
        total = total + mask_loss.min() + IOU_WEIGHT * F.mse_loss(iou_pred[j].float(), true_iou)
    return total / len(targets)
