"""What the two SAM 2 backends (official sam2 and transformers) share.

Both cache the same embedding dict, pack prompts the same way (boxes as two corner points
labelled 2 and 3, then the clicks, padded with -1 = "not a point"), stop an encode between
encoder blocks on cancel, and turn an out-of-memory into a
:class:`~napari_sam2.engine.errors.DeviceMemoryError` with the model still loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..cancel import check_cancel
from ..prompts import ObjectPrompt
from ..runtime.devices import autocast
from .base import Prediction, sort_candidates

MASK_LOGIT = 10.0  # logit magnitude given to a binary mask prompt


def to_xy(rc: np.ndarray) -> np.ndarray:
    """(row, col) → SAM's (x, y).  The one and only place where the axes are swapped."""
    rc = np.asarray(rc, dtype=np.float32)
    return rc[..., ::-1].copy()


def packed_prompts(objects: Sequence[ObjectPrompt], label_dtype=np.int32):
    """Points and boxes of a batch as SAM's (B, N, 2) (x, y) coords and (B, N) labels.

    Boxes become two points labelled 2 and 3 before the clicks (what SAM2ImagePredictor
    does); shorter prompts are padded with label -1 ("not a point"). ``None`` when no
    object has a point or a box.
    """
    rows = []
    for obj in objects:
        coords, labels = [], []
        if obj.box is not None:
            b = obj.box
            coords += [to_xy([b.r0, b.c0]), to_xy([b.r1, b.c1])]
            labels += [2, 3]
        if obj.points is not None:
            coords += list(to_xy(obj.points.coords))
            labels += [int(v) for v in obj.points.labels]
        rows.append((coords, labels))
    n = max(len(r[1]) for r in rows)
    if n == 0:
        return None
    pc = np.zeros((len(rows), n, 2), np.float32)
    pl = -np.ones((len(rows), n), label_dtype)
    for i, (c, lab) in enumerate(rows):
        if lab:
            pc[i, : len(lab)] = np.asarray(c, np.float32)
            pl[i, : len(lab)] = lab
    return pc, pl


class SamBackendBase:
    """Encode/decode plumbing of the SAM 2 backends. A subclass sets ``device``,
    ``precision``, ``low_res_size``, ``_lock`` and ``_cancel`` and defines ``_decode``
    and ``_out_of_memory``."""

    def _check_cancel(self, module, args):
        """Forward pre-hook between two image-encoder blocks: stop when cancelled."""
        check_cancel(self._cancel, "Encoding cancelled.")

    def _guarded_encode(
        self, cancel, run: Callable[[], object], what: str, after=None, precision=None
    ):
        """``run()`` under the lock and autocast with ``cancel`` watched by the block hooks;
        an out-of-memory is raised as ``_out_of_memory(what)`` once the lock is released.
        ``after`` (if given) always runs, still under the lock (e.g. resetting a predictor).
        ``precision`` overrides the backend's for this call only (calibration)."""
        t0 = time.perf_counter()
        result = None
        with self._lock, autocast(self.device, precision or self.precision):
            self._cancel = cancel
            try:
                result = run()
            except torch.OutOfMemoryError:
                pass  # raised below, once the state and the lock are released
            finally:
                self._cancel = None
                if after is not None:
                    after()
        if result is None:
            raise self._out_of_memory(what)
        return result, time.perf_counter() - t0

    def mask_to_logits(self, mask: np.ndarray) -> torch.Tensor:
        """Binary (H, W) mask → (1, s/4, s/4) logits in SAM's (non aspect-preserving) frame."""
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
        low = F.interpolate(m, (self.low_res_size, self.low_res_size), mode="area")[0]
        return (low * 2.0 - 1.0) * MASK_LOGIT

    def predict(
        self, embedding, objects: Sequence[ObjectPrompt], *, multimask: bool | None = None
    ):
        return predict_grouped(self, embedding, objects, multimask)


def predict_grouped(backend, embedding, objects: Sequence[ObjectPrompt], multimask):
    """``predict`` of the SAM 2 backends (official and transformers): objects decoded in
    batches of the same kind (with/without a mask prompt, single/multi mask) through
    ``backend._decode``, candidates sorted by score, an out-of-memory turned into
    ``backend._out_of_memory``'s error."""
    out: list[Prediction | None] = [None] * len(objects)
    groups: dict[tuple, list[int]] = {}
    for i, obj in enumerate(objects):
        mm = obj.single_point if multimask is None else bool(multimask)
        groups.setdefault((obj.mask is not None, mm), []).append(i)
    oom = False
    with backend._lock, autocast(backend.device, backend.precision):
        try:
            for (_, mm), idx in groups.items():
                decoded = backend._decode(embedding, [objects[i] for i in idx], mm)
                masks, scores, low = decoded[:3]
                obj = decoded[3] if len(decoded) > 3 else None  # object score logits
                for j, i in enumerate(idx):
                    c, s, lr = sort_candidates(masks[j], scores[j], low[j])
                    info = {"multimask": mm}
                    if obj is not None:
                        info["object_score"] = float(obj[j])
                    out[i] = Prediction(c, s, lr, objects[i], info)
        except torch.OutOfMemoryError:
            oom = True
    if oom:
        raise backend._out_of_memory(f"decoding {len(objects)} object(s)")
    return out
