"""Video mode of :mod:`~napari_sam2.engine.propagation`: SAM 2's video predictor.

- The video predictor *shares* the image model's modules and weights (no second load, no
  second copy in memory): it is a :class:`SAM2VideoPredictor` view of the same
  ``SAM2Base`` with the video-inference settings of ``build_sam2_video_predictor``.
- Frames come straight from the :class:`~napari_sam2.engine.planes.PlaneSource`: an
  indexable :class:`LazyFrames` reads, normalises (stack-wide limits, as for the image
  path) and resizes one plane when SAM 2 asks for it.  No JPEG, no temporary files, no
  full-stack copy up front.
- All objects of the start plane are added with ``add_new_mask``; one pass per direction.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backends.sam2 import has_compiled_extension
from ..cancel import check_cancel
from ..errors import ModelError
from ..runtime.devices import autocast
from .report import END

# frames whose outputs SAM 2 may still read as memory (num_maskmem = 7 frames, up to 16
# object pointers): older outputs are dropped to bound memory on long stacks
KEEP_FRAMES = 16


def video_predictor(model):
    """A :class:`SAM2VideoPredictor` sharing ``model``'s modules, parameters and buffers."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    vp = SAM2VideoPredictor.__new__(SAM2VideoPredictor)
    vp.__dict__.update(model.__dict__)  # same _modules/_parameters/_buffers dicts
    # what build_sam2_video_predictor sets (hole filling needs sam2's compiled _C)
    vp.fill_hole_area = 8 if has_compiled_extension() else 0
    vp.non_overlap_masks = False
    vp.clear_non_cond_mem_around_input = False
    vp.add_all_frames_to_correct_as_cond = False
    vp.binarize_mask_from_pts_for_mem_enc = True
    return vp


class LazyFrames:
    """Frame ``i`` → normalised ``(3, S, S)`` float tensor, read from the source on demand.

    ``reads`` counts the planes read (each access reads its plane: SAM 2 caches the last
    frame's features itself).
    """

    def __init__(self, source, indices, image_size: int):
        from sam2.utils.transforms import SAM2Transforms

        self.source = source
        self.indices = list(indices)
        self.transforms = SAM2Transforms(resolution=int(image_size), mask_threshold=0.0)
        self.reads = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        raw = self.source.raw_plane(self.indices[int(i)])
        self.reads += 1
        return self.transforms(self.source.to_sam_image(raw))


def init_state(vp, frames: LazyFrames, height: int, width: int, device) -> dict:
    """``SAM2VideoPredictor.init_state`` without its JPEG/mp4 loader (sam2 1.x keys)."""
    from collections import OrderedDict

    return {
        "images": frames,
        "num_frames": len(frames),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": int(height),
        "video_width": int(width),
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def _prune(state: dict, keep: set[int]) -> None:
    for out in state["output_dict_per_obj"].values():
        nc = out["non_cond_frame_outputs"]
        for f in [f for f in nc if f not in keep]:
            del nc[f]


def _cancel_hooks(vp, cancel):
    """Stop a running encode between image-encoder blocks once ``cancel`` is set."""
    if cancel is None:
        return []

    def hook(module, args):
        check_cancel(cancel, "Propagation cancelled.")

    trunk = getattr(vp.image_encoder, "trunk", None)
    return [b.register_forward_pre_hook(hook) for b in getattr(trunk, "blocks", ())]


def run_video(seg, plan) -> None:
    """Fill ``plan`` (see :mod:`.propagate`) with SAM 2's video predictor."""
    loaded = getattr(seg.backend, "loaded", None)
    if loaded is None:
        raise ModelError("Video mode needs the SAM 2 backend.")
    vp = video_predictor(loaded.model)
    report = plan.report
    positions = list(range(plan.first, plan.last + 1))
    frames = LazyFrames(plan.source, [plan.index(p) for p in positions], vp.image_size)
    h, w = plan.source.plane_shape
    start = plan.start[plan.axis] - plan.first
    hooks = _cancel_hooks(vp, plan.cancel)
    try:
        with torch.inference_mode(), autocast(loaded.device, loaded.precision):
            state = init_state(vp, frames, h, w, loaded.device)
            plan.check_cancel()
            for lid in plan.ids:
                vp.add_new_mask(state, start, lid, torch.from_numpy(plan.start_masks[lid]))
            for direction in plan.directions:
                _one_pass(vp, state, plan, direction, start, positions)
    finally:
        for hd in hooks:
            hd.remove()
        report.plane_reads = frames.reads


def _one_pass(vp, state, plan, direction, start, positions) -> None:
    report = plan.report
    active = dict(plan.start_masks)
    for track in report.objects.values():
        track.stopped[direction] = END
    todo = len(plan.positions(direction))
    if todo == 0:
        return
    gen = vp.propagate_in_video(state, start_frame_idx=start, reverse=direction == "backward")
    done = 0
    try:
        while active:
            plan.check_cancel()
            try:
                f, obj_ids, logits = next(gen)
            except StopIteration:
                break
            if f == start:
                continue
            pos = positions[f]
            ids = [int(i) for i in obj_ids]
            scores = logits[:, 0].float().cpu().numpy()  # (n_obj, H, W) logits
            live = [k for k, i in enumerate(ids) if i in active]
            if live:
                sub = scores[live]
                best = np.argmax(sub, axis=0)
                fg = sub.max(axis=0) > 0.0
                masks = {ids[k]: fg & (best == j) for j, k in enumerate(live)}
            else:
                masks = {}
            plan.take(direction, pos, masks, active)
            done += 1
            keep = {x for x in range(f - KEEP_FRAMES, f + KEEP_FRAMES + 1)}
            keep |= {x for x in range(start - KEEP_FRAMES, start + KEEP_FRAMES + 1)}
            _prune(state, keep)
    finally:
        gen.close()
    if done < todo:
        plan.step(todo - done)
