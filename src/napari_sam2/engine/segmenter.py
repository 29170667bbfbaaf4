"""The scripted API: one object that owns a backend, an image and an embedding cache.

>>> seg = Segmenter(model="tiny", checkpoint="sam2.1_hiera_tiny.pt", device="auto")
>>> seg.set_image(stack, contrast_limits=(100, 4000))
>>> [obj] = seg.predict(plane=(12,), points=[(40, 52)])
>>> ids = seg.segment_into(labels, plane=(12,), boxes=[(10, 10, 60, 80), (70, 5, 120, 50)])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from . import auto_tile as _auto_tile
from . import automatic as _automatic
from . import labels as _labels
from . import propagation as _propagate
from .backends.base import Prediction, Predictor
from .backends.factory import BACKENDS, cache_dtype_for, make_backend
from .backends.remote import connect, wants_server
from .cache import disk as _disk_cache
from .cache.memory import EmbeddingCache
from .cancel import check_cancel
from .edits import plan_edits
from .errors import ImageError, LabelsError, PromptError
from .planes import DEFAULT_PERCENTILES, PlaneSource
from .prompts import ObjectPrompt, make_objects
from .runtime import auto_precision as _auto_precision
from .runtime import speed as _speed
from .runtime import warmup as _warmup

log = logging.getLogger(__name__)


class Segmenter:
    """Promptable segmentation of the planes of one image.

    Parameters
    ----------
    model : str
        SAM 2 size: ``tiny``, ``small``, ``base_plus`` or ``large`` (SAM 2.1 unless
        ``version="2.0"``).
    checkpoint : path, optional
        A checkpoint file or a folder holding the official file.  When None, the usual
        folders (``$NAPARI_SAM2_CHECKPOINT_DIR``, ``~/.cache/napari-sam2``, ...) and the
        Hugging Face cache are searched.
    backend : {"auto", "sam2", "classical", "transformers"}
        ``sam2`` requires a checkpoint (error if missing); ``classical`` needs none;
        ``auto`` uses SAM 2 when a checkpoint is found, else the classical backend and sets
        :attr:`notice`.  ``transformers`` runs SAM 2 through Hugging Face transformers
        (extra ``napari-sam2[transformers]``); ``checkpoint`` is then a transformers
        folder, a hub id in the local cache or an official ``.pt`` (converted in memory).
    device, precision : str
        ``auto``/``cuda``/``mps``/``cpu``; ``auto``/``fp32``/``bf16``.  ``auto`` on a CPU
        runs bf16 only where the CPU has native bf16 *and* a saved calibration measured it
        faster with the same masks (:mod:`.auto_precision`; :attr:`precision_info` says
        which and why), else fp32.
    image_size : int, optional
        Override SAM 2's input size (smaller = faster, coarser; tests use 256).
    random_weights : bool
        Build SAM 2 without a checkpoint (plumbing checks only: the masks are meaningless;
        :attr:`notice` says so).
    allow_download : bool
        Download the checkpoint from the Hugging Face hub when not found locally.
    cache_bytes : int
        Budget of the embedding cache.
    cache_dtype : {"auto", "fp16", "bf16", None}
        How the in-memory cache stores float32 embeddings (``None``: as encoded).
        ``auto``: fp16 on a GPU (half the memory there), as encoded on a CPU (masks
        exactly those of sam2's own predictor).
    predictor : Predictor, optional
        Use this backend object instead (custom or fine-tuned models, tests).
    disk_cache : path, True, False or None
        Persistent embedding cache (docs/performance.md): a folder, True for
        ``~/.cache/napari-sam2/embeddings``, False for off; None (default) reads
        ``$NAPARI_SAM2_DISK_CACHE`` (off when unset).
    server, token : str, optional
        Encode on a ``napari-sam2 serve`` machine and decode here (docs/server.md):
        ``"http://host:8765"`` and its token (default ``$NAPARI_SAM2_SERVER`` when nothing
        asks for a local model, and ``$NAPARI_SAM2_TOKEN``); ``server=False``: never.
    """

    def __init__(
        self,
        model: str = "tiny",
        checkpoint=None,
        *,
        backend: str = "auto",
        version: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        image_size: int | None = None,
        random_weights: bool = False,
        allow_download: bool = False,
        cache_bytes: int = 2 * 1024**3,
        cache_dtype: str | None = "auto",
        predictor: Predictor | None = None,
        disk_cache=None,
        server=None,
        token: str | None = None,
    ):
        self.notice: str | None = None
        if predictor is None and wants_server(server, backend, checkpoint, random_weights):
            predictor = connect(server or None, token, device=device)  # docs/server.md
        if predictor is not None:
            if backend not in BACKENDS:
                raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}.")
            self.backend = predictor
        else:
            self.backend, self.notice = make_backend(
                backend,
                model,
                checkpoint,
                version=version,
                device=device,
                precision=precision,
                image_size=image_size,
                random_weights=random_weights,
                allow_download=allow_download,
            )
        # precision "auto" on the CPU: the saved bf16/fp32 verdict (engine/auto_precision.py)
        requested = precision if predictor is None else "given"
        self.precision_info = _auto_precision.settle(self, requested)
        cache_dtype = cache_dtype_for(self.backend, cache_dtype)
        self.cache = EmbeddingCache(cache_bytes, cache_dtype)
        self.disk_cache = _disk_cache.resolve(disk_cache)
        self.source: PlaneSource | None = None

    # ------------------------------------------------------------------ image
    def set_image(
        self,
        image,
        *,
        contrast_limits=None,
        rgb: bool | None = None,
        channel_axis: int | None = None,
        channel: int | str = "mean",
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    ) -> Segmenter:
        """Use ``image`` (2-D to n-D, numpy/dask/zarr).  Nothing is encoded yet."""
        self.source = PlaneSource(
            image,
            rgb=rgb,
            channel_axis=channel_axis,
            channel=channel,
            contrast_limits=contrast_limits,
            percentiles=percentiles,
        )
        return self

    def require_source(self) -> PlaneSource:
        """The image's :class:`PlaneSource`; :class:`ImageError` when no image is set."""
        if self.source is None:
            raise ImageError("No image set: call set_image(array) first.")
        return self.source

    @property
    def stats(self):
        """Cache counters: ``encodes``, ``hits``, ``evictions``, ``last_encode_s``, ``disk_*``."""
        return self.cache.stats

    def embedding(self, plane=(), *, cancel=None):
        """The plane's embedding, from the cache or freshly encoded.

        ``cancel``: a ``threading.Event``; once set, a running encode stops as soon as the
        backend can (between image-encoder blocks for SAM 2) with :class:`Cancelled`.
        """
        src = self.require_source()
        index = src.check_index(plane)
        raw = src.raw_plane(index)  # read once: lazy (dask/zarr) planes cost I/O
        key = (src.plane_key(index, raw=raw), self.backend.cache_key())
        emb = self.cache.get(key)
        if emb is None and self.disk_cache is not None:
            emb = self.disk_cache.get(key, self.backend, self.cache.stats)
            if emb is not None:
                emb = self.cache.put(key, emb)
        if emb is None:
            check_cancel(cancel)
            t0 = time.perf_counter()
            image = src.to_sam_image(raw)
            emb = self.backend.encode(image, cancel=cancel)
            self.cache.stats.encodes += 1
            self.cache.stats.last_encode_s = time.perf_counter() - t0
            emb = self.cache.put(key, emb)
            if self.disk_cache is not None:
                self.disk_cache.put(key, emb, self.backend)
        return emb

    def precompute(
        self, planes=None, *, cancel=None, progress=None, batch_size: int | None = None
    ) -> int:
        """Encode ``planes`` (default: every plane) into the caches; returns how many.

        ``progress(done, total)`` is called after each plane.  With a disk cache, a later
        session (or the widget) on the same image and model encodes nothing.
        ``batch_size``: planes per encoder call (default: 4 on CUDA, 1 elsewhere).
        """
        src = self.require_source()
        planes = list(np.ndindex(*src.index_shape)) if planes is None else list(planes)
        return _speed.precompute(self, planes, batch_size, cancel=cancel, progress=progress)

    def warm_up(self, *, cancel=None) -> float:
        """Pay one-off costs now (see :mod:`.warmup`); no cache or counter changes."""
        return _warmup.warm_up(self.backend, cancel=cancel)

    def is_encoded(self, plane=()) -> bool:
        src = self.require_source()
        return (src.plane_key(src.check_index(plane)), self.backend.cache_key()) in self.cache

    # --------------------------------------------------------------- predict
    def predict(
        self,
        plane=(),
        *,
        points=None,
        point_labels=None,
        boxes=None,
        masks=None,
        objects: Sequence[ObjectPrompt] | None = None,
        multimask: bool | None = None,
        cancel=None,
        tile: bool | int | None = None,
    ) -> list[Prediction]:
        """Segment objects on one plane; prompts are data pixel (row, col).

        Either ``objects`` (a list of :class:`ObjectPrompt`) or the plain-array form:
        ``points`` (N, 2) with ``point_labels`` (1 positive / 0 negative), ``boxes``
        (B, 4) as (r0, c0, r1, c1) — one object per box, points inside a box join it —
        and ``masks`` (M, H, W).  ``multimask`` None: three candidates for a lone click,
        one otherwise.  ``cancel``: see :meth:`embedding`.  Returns one
        :class:`Prediction` per object.

        ``tile``: on a plane larger than the model input (SAM 2: 1024 px; classical: 2048)
        only the window around the prompts is read, normalised and encoded (a lazy dask or
        zarr plane is never read whole) and the masks come back **bbox-local**: their
        top-left pixel in the plane is ``Prediction.offset``, and
        ``Prediction.plane_mask(shape)`` places one on the plane.  ``tile=False``: the
        whole plane (downscaled to the model input), full-plane masks; ``True``: always
        tiled; an int: tiles of that size.  See docs/scripting.md.
        """
        src = self.require_source()
        index = src.check_index(plane)
        if objects is None:
            objects = make_objects(points, point_labels, boxes, masks)
        if not objects:
            raise PromptError("No prompt given: add a point, a box or a mask.")
        objects = [o.validated(src.plane_shape) for o in objects]
        size = _auto_tile.tile_size_for(self, src.plane_shape, tile)
        if size is not None:
            return _auto_tile.predict(
                self, index, objects, multimask=multimask, cancel=cancel, size=size
            )
        emb = self.embedding(index, cancel=cancel)
        check_cancel(cancel)
        return self.backend.predict(emb, objects, multimask=multimask)

    def segment_into(
        self,
        labels,
        plane=(),
        *,
        label_id: int | None = None,
        policy: str = _labels.KEEP,
        replace: bool = False,
        **prompts,
    ) -> list[int]:
        """Predict and write each object into ``labels`` (modified in place).

        ``labels`` has the image's non-channel shape.  New objects get ``max + 1``,
        ``max + 2``...; ``label_id`` (one object only) writes that ID, and with
        ``replace=True`` the object's old pixels on this plane are replaced (refinement).
        Returns the IDs written.  On a tiled plane (see :meth:`predict`'s ``tile``, also
        accepted here) only each object's bounding box of ``labels`` is read and written.
        """
        src = self.require_source()
        index = src.check_index(plane)
        expected = src.index_shape + src.plane_shape
        if tuple(labels.shape) != expected:
            raise LabelsError(
                f"Labels of shape {tuple(labels.shape)} do not match the image ({expected})."
            )
        preds = self.predict(index, **prompts)
        if any(p.offset != (0, 0) or p.mask.shape != src.plane_shape for p in preds):
            return _auto_tile.segment_into(
                labels, preds, index, label_id=label_id, policy=policy, replace=replace
            )
        if label_id is not None and len(preds) > 1:
            raise LabelsError("label_id can only be given for a single object.")
        edits = plan_edits(labels, preds, index, label_id=label_id, policy=policy, replace=replace)
        for e in edits:
            _labels.apply_edit(labels, e)
        return [e.label_id for e in edits]

    def describe(self) -> dict:
        """Backend, normalisation and cache facts (for status lines and provenance)."""
        d = dict(self.backend.describe())
        if self.source is not None:
            d["normalization"] = self.source.normalization.to_dict()
            d["channel"] = self.source.channel
        d["cache"] = self.stats.as_dict()
        return d

    # ------------------------------------------------------------- propagate
    def propagate(
        self,
        labels,
        plane,
        *,
        axis: int = 0,
        label_ids=None,
        direction: str = "both",
        stop_at=None,
        mode: str = "auto",
        policy: str = _labels.KEEP,
        cancel=None,
        progress=None,
        iou_threshold: float | None = _propagate.DEFAULT_IOU_THRESHOLD,
        max_area_ratio: float | None = _propagate.DEFAULT_MAX_AREA_RATIO,
        min_area: int = _propagate.DEFAULT_MIN_AREA,
        prompt: str = "auto",
        apply: bool = True,
        axis_kind: str = "z",
    ) -> _propagate.PropagationReport:
        """Carry the objects of ``plane`` through the stack along ``axis`` (Z or T).

        ``labels`` (the image's non-channel shape) is modified in place when the run ends,
        and not at all when it is cancelled or fails.  ``plane`` is the full plane index
        (as for :meth:`predict`); ``axis`` is the position in that index that moves.
        ``label_ids``: the objects to carry (default: all on ``plane``); ``direction``:
        ``both``/``forward``/``backward``; ``stop_at=(first, last)``: the range along the
        axis (default: the whole axis); ``mode``: ``projection`` (any backend), ``video``
        (SAM 2 video predictor) or ``auto`` (video on CUDA).  An object stops when its mask
        vanishes, its IoU with the previous plane is under ``iou_threshold`` or its area
        grows more than ``max_area_ratio`` times, or it has under ``min_area`` pixels.
        ``prompt`` (projection): how the previous mask prompts the next plane (``auto``,
        ``mask+box``, ``mask``, ``box``, ``mask+point``...).  ``progress(done, total)`` is called per
        plane; ``cancel`` (``threading.Event``) is honoured between planes and inside
        encodes.  ``apply=False`` only plans (the edits are in the report).
        ``axis_kind``: ``"z"`` (default: the IoU rule above) or ``"t"`` for a time axis,
        where objects move: each object's mask is moved by its estimated motion before it
        prompts the next frame, and the new mask is the same object when the model is
        confident (predicted IoU, SAM 2.1 object score), its centroid lies within half a
        diameter of the moved object and its area did not jump; it stops with
        ``left_field``, ``divided``, ``lost`` or ``low_score`` (:mod:`.motion`).
        See docs/propagation.md.
        """
        return _propagate.propagate(
            self, labels, plane, axis=axis, label_ids=label_ids, direction=direction,
            stop_at=stop_at, mode=mode, policy=policy, cancel=cancel, progress=progress,
            iou_threshold=iou_threshold, max_area_ratio=max_area_ratio, min_area=min_area,
            prompt=prompt, apply=apply, axis_kind=axis_kind,
        )  # fmt: skip

    def segment_everything(
        self,
        labels=None,
        plane=(),
        *,
        points_per_side: int = 32,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        min_area: float = 0.0,
        max_area: float | None = None,
        policy: str = _labels.KEEP,
        pixel_size=None,
        cancel=None,
        progress=None,
        **advanced,
    ):
        """Automatic instance segmentation of a plane (``plane="all"``: every plane).

        Without ``labels``: returns int32 instance labels (IDs 1..N, raster order of each
        object's first pixel) of the plane, or of the whole stack for ``"all"``.  With
        ``labels``: writes new objects into it (IDs from ``max + 1``, ``policy`` as for
        prompts) and returns it; nothing is written if cancelled or on error.  SAM 2: a
        ``points_per_side``² click grid filtered by predicted IoU and stability, NMS,
        overlaps resolved (higher score wins).  Classical backend: threshold + watershed.
        Areas in physical units² when ``pixel_size`` (row, col) is given.  More settings
        (``points_per_batch``, ``box_nms_thresh``, ``hole_area``, ``sigma``, ``split_h``):
        see :class:`napari_sam2.engine.automatic.params.EverythingParams`.
        """
        return _automatic.segment_everything(
            self, labels, plane, points_per_side=points_per_side,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            min_area=min_area, max_area=max_area, policy=policy, pixel_size=pixel_size,
            cancel=cancel, progress=progress, **advanced,
        )  # fmt: skip
