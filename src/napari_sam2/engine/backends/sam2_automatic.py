"""SAM 2's automatic mask generation, restructured for speed.

Same steps and results as ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator``
(one crop layer, no mask-to-mask refinement): a ``points_per_side``² grid of single
positive clicks, three candidates each, kept when the predicted IoU is over
``pred_iou_thresh`` and the stability score at least ``stability_score_thresh``, then box
NMS.  What differs is the work done:

- the plane's embedding comes from the segmenter's cache (encoded once per plane);
- clicks are decoded in large batches (``points_per_batch``, 256 by default);
- only candidates that pass the IoU filter are upsampled to the plane's size, in chunks,
  to compute their stability and box; the survivors are kept as low-resolution logits
  (``(image_size/4)²`` floats each), no RLE round trips, and full-resolution masks are
  built again only for the few that survive NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..automatic.params import CANCELLED, EverythingParams
from ..cancel import check_cancel
from ..runtime.devices import autocast

UPSAMPLE_CHUNK = 32  # full-resolution logits upsampled at once (memory bound)


def point_grid(n_per_side: int, hw) -> np.ndarray:
    """SAM's grid of ``n²`` clicks as (x, y) pixel coordinates of a ``hw`` plane (as
    ``sam2.utils.amg.build_point_grid`` scaled to the plane)."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    grid = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    return grid * np.array([hw[1], hw[0]])[None, :]


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold ± offset`` (sam2.utils.amg's formula)."""
    inter = (logits > (threshold + offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    union = (logits > (threshold - offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return inter / union


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool → (N, 4) inclusive boxes (x0, y0, x1, y1); (0, 0, 0, 0) when empty."""
    from sam2.utils.amg import batched_mask_to_box

    return batched_mask_to_box(masks)


@dataclass
class Candidates:
    """Masks that passed every filter, in decreasing predicted-IoU order (NMS order).

    ``low_res``: their (N, s/4, s/4) logits; ``scores``: predicted IoU; ``stability``;
    ``boxes`` (N, 4) inclusive (x0, y0, x1, y1) in plane pixels; ``points`` (N, 2) the
    click (x, y) that produced each; ``areas`` in pixels; ``orig_hw`` the plane's size.
    """

    low_res: torch.Tensor
    scores: np.ndarray
    stability: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    areas: np.ndarray
    orig_hw: tuple[int, int]
    mask_threshold: float = 0.0

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def _upsample(self, low: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            low[:, None].float(), self.orig_hw, mode="bilinear", align_corners=False
        )[:, 0]

    def masks(self) -> np.ndarray:
        """All survivors as full-resolution (N, H, W) bool masks."""
        out = np.zeros((len(self),) + tuple(self.orig_hw), bool)
        for i in range(0, len(self), UPSAMPLE_CHUNK):
            full = self._upsample(self.low_res[i : i + UPSAMPLE_CHUNK])
            out[i : i + UPSAMPLE_CHUNK] = (full > self.mask_threshold).cpu().numpy()
        return out

    def local_masks(self):
        """Yield each survivor as ``(bbox-local bool mask, (r0, c0))``."""
        for i in range(0, len(self), UPSAMPLE_CHUNK):
            full = self._upsample(self.low_res[i : i + UPSAMPLE_CHUNK]) > self.mask_threshold
            full = full.cpu().numpy()
            for j, m in enumerate(full):
                x0, y0, x1, y1 = (int(v) for v in self.boxes[i + j])
                yield m[y0 : y1 + 1, x0 : x1 + 1], (y0, x0)


def _empty(orig_hw, s4, mask_threshold) -> Candidates:
    return Candidates(
        torch.zeros((0, s4, s4)),
        np.zeros(0, np.float32),
        np.zeros(0, np.float32),
        np.zeros((0, 4), np.int64),
        np.zeros((0, 2), np.float32),
        np.zeros(0, np.int64),
        tuple(orig_hw),
        mask_threshold,
    )


@torch.inference_mode()
def sam2_candidates(
    backend,
    emb: dict,
    params: EverythingParams = EverythingParams(),
    *,
    points_xy: np.ndarray | None = None,
    edge_box: tuple[int, int, int, int] | None = None,
    cancel=None,
    progress=None,
) -> Candidates:
    """Run the click grid on a cached embedding (``Sam2Backend.encode``'s dict).

    ``points_xy``: explicit clicks (x, y) in plane pixels instead of the grid.
    ``edge_box``: (x0, y0, x1, y1) sides of the plane that are *cut* (a tile inside a
    larger plane): masks whose box touches such a side are dropped, as the stock
    generator does for crops (``is_box_near_crop_edge``); each side is given as the plane
    border when it is a real border.
    """
    from torchvision.ops.boxes import batched_nms

    predictor = backend._predictor
    model = predictor.model
    transforms = predictor._transforms
    device = backend.device
    hw = tuple(int(v) for v in emb["orig_hw"])
    s4 = backend.low_res_size
    thr = float(backend.mask_threshold)
    if points_xy is None:
        points_xy = point_grid(params.points_per_side, hw)
    pts = torch.as_tensor(np.asarray(points_xy, np.float32), device=device)
    in_pts = transforms.transform_coords(pts, normalize=True, orig_hw=hw)
    n = in_pts.shape[0]
    bsz = params.points_per_batch
    n_batches = max(1, -(-n // bsz))
    keep_low, keep_iou, keep_stab, keep_box, keep_pts = [], [], [], [], []
    image_pe = model.sam_prompt_encoder.get_dense_pe()
    hrf = list(emb["high_res_feats"])
    with backend._lock, autocast(device, backend.precision):
        for b in range(n_batches):
            check_cancel(cancel, CANCELLED)
            p = in_pts[b * bsz : (b + 1) * bsz]
            if p.shape[0] == 0:
                break
            labels = torch.ones((p.shape[0], 1), dtype=torch.int, device=device)
            sparse, dense = model.sam_prompt_encoder(
                points=(p[:, None, :], labels), boxes=None, masks=None
            )
            low, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=emb["image_embed"],
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
                repeat_image=p.shape[0] > 1,
                high_res_features=hrf,
            )
            low = low.flatten(0, 1).float()
            iou = iou.flatten(0, 1).float()
            src_pts = pts[b * bsz : (b + 1) * bsz].repeat_interleave(3, dim=0)
            if params.pred_iou_thresh > 0.0:
                k = iou > params.pred_iou_thresh
                low, iou, src_pts = low[k], iou[k], src_pts[k]
            for i in range(0, low.shape[0], UPSAMPLE_CHUNK):
                lo = low[i : i + UPSAMPLE_CHUNK]
                full = F.interpolate(lo[:, None], hw, mode="bilinear", align_corners=False)[:, 0]
                stab = stability_score(full, thr, params.stability_score_offset)
                k = torch.ones_like(stab, dtype=torch.bool)
                if params.stability_score_thresh > 0.0:
                    k = stab >= params.stability_score_thresh
                if not bool(k.any()):
                    continue
                masks = full[k] > thr
                boxes = masks_to_boxes(masks)
                areas = masks.sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
                keep_low.append(lo[k])
                keep_iou.append(iou[i : i + UPSAMPLE_CHUNK][k])
                keep_stab.append(stab[k])
                keep_box.append(torch.cat([boxes, areas[:, None]], 1))
                keep_pts.append(src_pts[i : i + UPSAMPLE_CHUNK][k])
            if progress is not None:
                progress(b + 1, n_batches)
    if not keep_low:
        return _empty(hw, s4, thr)
    low = torch.cat(keep_low)
    iou = torch.cat(keep_iou)
    stab = torch.cat(keep_stab)
    box_area = torch.cat(keep_box)
    boxes, areas = box_area[:, :4], box_area[:, 4]
    src_pts = torch.cat(keep_pts)
    k = areas > 0
    if params.min_area:
        k &= areas >= params.min_area
    if params.max_area is not None:
        k &= areas <= params.max_area
    if edge_box is not None:
        k &= ~_near_cut_edge(boxes, edge_box, hw)
    low, iou, stab, boxes, areas, src_pts = (t[k] for t in (low, iou, stab, boxes, areas, src_pts))
    order = batched_nms(
        boxes.float(), iou, torch.zeros_like(boxes[:, 0]), iou_threshold=params.box_nms_thresh
    )
    return Candidates(
        low[order],
        iou[order].cpu().numpy(),
        stab[order].cpu().numpy(),
        boxes[order].cpu().numpy().astype(np.int64),
        src_pts[order].cpu().numpy(),
        areas[order].cpu().numpy().astype(np.int64),
        hw,
        thr,
    )


def _near_cut_edge(boxes: torch.Tensor, edge_box, hw, atol: float = 20.0) -> torch.Tensor:
    """Boxes within ``atol`` px of a side of the plane that is a cut (tile) edge.

    ``edge_box`` = (cut_left, cut_top, cut_right, cut_bottom) as booleans.
    """
    left, top, right, bottom = (bool(v) for v in edge_box)
    h, w = hw
    b = boxes.float()
    near = torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
    if left:
        near |= b[:, 0] <= atol
    if top:
        near |= b[:, 1] <= atol
    if right:
        near |= b[:, 2] >= w - 1 - atol
    if bottom:
        near |= b[:, 3] >= h - 1 - atol
    return near
