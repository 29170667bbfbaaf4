"""A weight-free backend built on scikit-image.

It runs when no SAM 2 checkpoint is available (with a clear notice, never silently in
place of a SAM 2 model the user asked for), and it is the deterministic oracle of the
tests.  Rules, on the normalised plane smoothed with a Gaussian (sigma=1):

- **points**: the object is the region on the clicked pixel's side of the Otsu threshold,
  connected to the positive clicks (region growing);
- **box**: Otsu threshold inside the box, polarity from the box border (the side the border
  is *not* on is the object), largest component; positive clicks inside the box seed the
  object instead, clicks outside it are ignored;
- **mask**: the thresholded region overlapping the mask, inside a small dilation of it;
- **negative points** inside the result split it (watershed on the distance transform,
  positive vs negative seeds) and the negative side is dropped;
- holes are filled.  With ``multimask`` three candidates come from the threshold and two
  neighbours (±5 % of the intensity range), scored 1.0, 0.9, 0.8 in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from ..automatic.classical import classical_instances
from ..automatic.params import AutomaticRegion, EverythingParams
from ..automatic.postprocess import fill_small_holes
from ..cancel import check_cancel
from ..prompts import Box, ObjectPrompt
from .base import Prediction

_STEPS = (0.0, -0.05, 0.05)
_SCORES = (1.0, 0.9, 0.8)


def _otsu(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return float(values.mean()) if values.size else 0.5
    return float(threshold_otsu(values))


def _finite(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``gray`` without NaN/±inf, and where it was not NaN.

    Float images from processing pipelines carry them (the Segmenter's normalisation maps
    them already; this is for direct callers).  NaN becomes background (the lowest finite
    value, and is left out of every object), +inf the highest finite value, -inf the
    lowest; the Otsu threshold only sees finite pixels.
    """
    finite = np.isfinite(gray)
    if finite.all():
        return gray, finite
    valid = ~np.isnan(gray)
    if finite.any():
        lo, hi = float(gray[finite].min()), float(gray[finite].max())
    else:
        lo = hi = 0.0
    return np.nan_to_num(gray, nan=lo, posinf=hi, neginf=lo), valid


class ClassicalBackend:
    """Deterministic, weight-free region growing / thresholding."""

    name = "classical"
    # its box rule keeps the largest component of the box, often a neighbour in dense
    # tissue: projection propagation prompts with the previous mask alone
    propagation_prompt = "mask"

    def __init__(self, sigma: float = 1.0, split_touching: bool = True):
        self.sigma = float(sigma)
        self.split_touching = bool(split_touching)

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "model": "classical (scikit-image, no weights)",
            "device": "cpu",
            "precision": "fp32",
            "sigma": self.sigma,
        }

    def cache_key(self) -> tuple:
        return (self.name, self.sigma)

    def encode(self, image: np.ndarray, cancel=None) -> dict:
        check_cancel(cancel, "Encoding cancelled.")
        gray = np.asarray(image, dtype=np.float32)
        if gray.ndim == 3:
            gray = gray.mean(axis=-1)
        gray, valid = _finite(gray)
        smooth = gaussian(gray, sigma=self.sigma, preserve_range=True).astype(np.float32)
        emb = {"smooth": smooth, "threshold": _otsu(smooth[valid]), "orig_hw": smooth.shape}
        if not valid.all():
            emb["valid"] = valid  # NaN pixels: never part of an object
        return emb

    def predict(
        self, embedding, objects: Sequence[ObjectPrompt], *, multimask: bool | None = None
    ):
        out = []
        for obj in objects:
            mm = obj.single_point if multimask is None else bool(multimask)
            steps = _STEPS if mm else _STEPS[:1]
            masks = np.stack([self._segment(embedding, obj, d) for d in steps])
            out.append(
                Prediction(masks, np.asarray(_SCORES[: len(steps)]), None, obj, {"multimask": mm})
            )
        return out

    def automatic_instances(
        self, region: AutomaticRegion, params: EverythingParams, *, cancel=None, progress=None
    ) -> np.ndarray:
        """Otsu threshold + watershed instances (:func:`classical_instances`) of a plane, or
        of a tile with the whole plane's threshold (no hole filling there: the merged plane
        is filled once)."""
        if region.is_tile:
            smooth = gaussian(region.gray(), params.sigma, preserve_range=True)
            return classical_instances(smooth, params, threshold=region.threshold())[0]
        smooth = region.embedding()["smooth"]
        if params.sigma != self.sigma:
            smooth = gaussian(region.gray(), params.sigma, preserve_range=True)
        lab, _ = classical_instances(smooth, params)
        if params.hole_area:
            lab = fill_small_holes(lab, params.hole_area)
        if progress is not None:
            progress(1, 1)
        return lab

    # ----------------------------------------------------------------- rules
    def _segment(self, emb: dict, obj: ObjectPrompt, step: float) -> np.ndarray:
        smooth = emb["smooth"]
        h, w = smooth.shape
        region = np.zeros((h, w), bool)
        if obj.box is not None:
            rs, cs = obj.box.slices()
        elif obj.mask is not None:
            b = obj.mask.bbox()
            if obj.points is not None and len(obj.points.positive):  # the clicks count too
                p = obj.points.positive
                b = Box(
                    min(b.r0, p[:, 0].min()),
                    min(b.c0, p[:, 1].min()),
                    max(b.r1, p[:, 0].max()),
                    max(b.c1, p[:, 1].max()),
                )
            pad_r = max(5, int(0.25 * (b.r1 - b.r0 + 1)))
            pad_c = max(5, int(0.25 * (b.c1 - b.c0 + 1)))
            rs = slice(max(0, int(b.r0) - pad_r), min(h, int(b.r1) + pad_r + 1))
            cs = slice(max(0, int(b.c0) - pad_c), min(w, int(b.c1) + pad_c + 1))
        else:
            rs, cs = slice(0, h), slice(0, w)
        region[rs, cs] = True
        local = obj.box is not None or obj.mask is not None
        t = _otsu(smooth[rs, cs]) if local else emb["threshold"]
        vmin, vmax = float(np.nanmin(smooth)), float(np.nanmax(smooth))
        t = t + step * (vmax - vmin)

        pos = neg = np.empty((0, 2), int)
        if obj.points is not None:
            pos = self._pixels(obj.points.positive, h, w)
            neg = self._pixels(obj.points.negative, h, w)
        if obj.box is not None and len(pos):  # the box bounds the object: clicks outside
            inside = (  # it cannot seed it (it would come out empty)
                (pos[:, 0] >= rs.start)
                & (pos[:, 0] < rs.stop)
                & (pos[:, 1] >= cs.start)
                & (pos[:, 1] < cs.stop)
            )
            pos = pos[inside]
        if "valid" in emb and len(pos):  # a click on NaN (no data) seeds nothing
            on_data = emb["valid"][pos[:, 0], pos[:, 1]]
            if not on_data.any() and obj.box is None and obj.mask is None:
                return np.zeros((h, w), bool)
            pos = pos[on_data]
        if len(pos):
            bright = smooth[pos[0, 0], pos[0, 1]] > t
        elif obj.box is not None:
            border = np.concatenate(
                [
                    smooth[rs, cs][0],
                    smooth[rs, cs][-1],
                    smooth[rs, cs][:, 0],
                    smooth[rs, cs][:, -1],
                ]
            )
            bright = np.mean(border > t) < 0.5
        else:
            m = obj.mask.mask
            inside = smooth[m].mean()
            ring = smooth[region & ~m]
            bright = inside >= (ring.mean() if ring.size else t)
        fg = ((smooth > t) if bright else (smooth <= t)) & region
        if "valid" in emb:
            fg &= emb["valid"]

        lab, _ = ndi.label(fg)
        if len(pos):
            ids = {self._component_at(lab, p) for p in pos} - {0}
            mask = np.isin(lab, list(ids)) if ids else np.zeros_like(fg)
            if ids and obj.box is None and self.split_touching:
                mask = self._touching_split(mask, pos)
        elif obj.mask is not None:
            near = ndi.binary_dilation(obj.mask.mask, iterations=2)
            ids = np.unique(lab[obj.mask.mask & fg])
            mask = np.isin(lab, ids[ids > 0]) & near
            if not mask.any():
                mask = obj.mask.mask.copy()
        else:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            mask = lab == int(np.argmax(sizes)) if sizes.max() > 0 else np.zeros_like(fg)
        mask = ndi.binary_fill_holes(mask)
        if len(neg) and mask[neg[:, 0], neg[:, 1]].any():
            mask = self._split(mask, pos, neg)
        return mask

    @staticmethod
    def _pixels(coords: np.ndarray, h: int, w: int) -> np.ndarray:
        px = np.floor(np.asarray(coords, float) + 0.5).astype(int).reshape(-1, 2)
        px[:, 0] = np.clip(px[:, 0], 0, h - 1)
        px[:, 1] = np.clip(px[:, 1], 0, w - 1)
        return px

    @staticmethod
    def _component_at(lab: np.ndarray, p, radius: int = 3) -> int:
        """Component under pixel p, or the nearest one within ``radius`` pixels."""
        r, c = int(p[0]), int(p[1])
        if lab[r, c]:
            return int(lab[r, c])
        win = lab[max(0, r - radius) : r + radius + 1, max(0, c - radius) : c + radius + 1]
        if not win.any():
            return 0
        rr, cc = np.nonzero(win)
        r0, c0 = max(0, r - radius), max(0, c - radius)
        d = (rr + r0 - r) ** 2 + (cc + c0 - c) ** 2
        k = int(np.argmin(d))
        return int(win[rr[k], cc[k]])

    @staticmethod
    def _touching_split(mask: np.ndarray, pos: np.ndarray, h: float = 2.0) -> np.ndarray:
        """Separate touching blobs: watershed of the distance transform from its h-maxima;
        keep the basins under the positive clicks."""
        rs, cs = ndi.find_objects(mask.astype(np.uint8))[0]
        sub = mask[rs, cs]
        dist = ndi.distance_transform_edt(np.pad(sub, 1))[1:-1, 1:-1]
        markers, n = ndi.label(h_maxima(dist, h))
        if n < 2:
            return mask
        ws = watershed(-dist, markers, mask=sub)
        p = pos - [rs.start, cs.start]
        inside = (
            (p[:, 0] >= 0) & (p[:, 0] < sub.shape[0]) & (p[:, 1] >= 0) & (p[:, 1] < sub.shape[1])
        )
        keep = np.unique(ws[p[inside, 0], p[inside, 1]])
        out = np.zeros_like(mask)
        out[rs, cs] = np.isin(ws, keep[keep > 0])
        return out if out.any() else mask

    @staticmethod
    def _split(mask: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """Watershed of the distance transform between positive and negative seeds."""
        dist = ndi.distance_transform_edt(mask)
        markers = np.zeros(mask.shape, np.int32)
        if len(pos):
            markers[pos[:, 0], pos[:, 1]] = 1
        else:  # box only: the innermost pixel far from the negatives seeds the object
            far = dist * ndi.distance_transform_edt(markers == 0)
            far[neg[:, 0], neg[:, 1]] = 0
            markers[np.unravel_index(int(np.argmax(far)), mask.shape)] = 1
        markers[neg[:, 0], neg[:, 1]] = 2
        markers[~mask] = 0
        ws = watershed(-dist, markers, mask=mask)
        return ws == 1
