"""Fine-tune SAM 2's mask decoder on your own labels (docs/finetuning.md).

>>> res = finetune([image], [labels], out="my_model.pt", model="tiny",
...                checkpoint="sam2.1_hiera_tiny.pt", epochs=10)
>>> res.val_before, res.val_after        # validation mIoU (first click / box)
>>> seg = Segmenter("tiny", checkpoint="my_model.pt")

The image encoder is frozen: each labelled plane is encoded once, through the
:class:`~napari_sam2.engine.segmenter.Segmenter` (same normalisation, same cache as
inference), and only the mask decoder (optionally the prompt encoder) is trained, on
prompts simulated from each object as in :mod:`napari_sam2.engine.training.evaluate`: a point inside
the object or its (jittered) box, plus up to ``corrective_clicks`` corrective clicks at the
centre of the largest error of the current model.  Loss as in SAM: 20 × focal + dice on the
mask (for a lone click, the best of the three candidates), plus the MSE between the
predicted and the true IoU.  The result is a checkpoint in the official layout
(``{"model": state_dict}``) and a JSON card next to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..backends.base import capability
from ..cancel import check_cancel
from ..errors import LabelsError, ModelError
from ..model.checkpoints import file_sha256
from ..segmenter import Segmenter
from . import data as fd
from .train import Trainer


@dataclass
class FinetuneResult:
    """What :func:`finetune` did.

    ``history`` has one entry per epoch (epoch 0: the base model before training) with
    ``train_loss`` (mean over the epoch's steps; None for epoch 0) and the validation mIoU
    for the first prompt of the evaluation protocol, ``val_point`` (interior click) and
    ``val_box`` (exact box).  ``best_epoch`` is the epoch whose weights were written.
    """

    checkpoint: Path | None
    card_path: Path | None
    card: dict
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def train_loss(self) -> list[float]:
        return [h["train_loss"] for h in self.history if h["train_loss"] is not None]

    @property
    def val_before(self) -> dict:
        return {k: self.history[0][k] for k in ("val_point", "val_box")}

    @property
    def val_after(self) -> dict:
        return {k: self.history[self.best_epoch][k] for k in ("val_point", "val_box")}


def card_path_for(out) -> Path:
    """The JSON card written next to a checkpoint: ``model.pt`` → ``model.card.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".card.json")


def finetune(
    images,
    labels,
    *,
    out=None,
    model: str = "tiny",
    checkpoint=None,
    version: str | None = None,
    segmenter=None,
    epochs: int = 10,
    lr: float = 1e-4,
    batch_size: int = 8,
    train_prompt_encoder: bool = False,
    val_fraction: float = 0.2,
    split: str = "object",
    patience: int = 3,
    corrective_clicks: int = 2,
    max_objects: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    random_weights: bool = False,
    device: str = "auto",
    image_kwargs=None,
    planes=None,
    names=None,
    cancel=None,
    progress=None,
) -> FinetuneResult:
    """Train the mask decoder of a SAM 2 model on the objects of ``labels``.

    Parameters
    ----------
    images, labels : array or list of arrays
        The images (2-D to n-D, as for ``Segmenter.set_image``) and their integer instance
        labels (the image's non-channel shape), one labels array per image.  Every plane
        holding a label is used (or ``planes``: one list of plane indices per image).
    out : path, optional
        Checkpoint to write (official layout), with its card ``<stem>.card.json``; written
        to a temporary name then renamed, so an interrupted or cancelled run leaves no file.
        None: nothing is written (the card is still returned).
    model, checkpoint, version, image_size, random_weights, device
        The base model, as for :class:`~napari_sam2.engine.segmenter.Segmenter`.
    segmenter : Segmenter, optional
        Use this loaded SAM 2 segmenter's model and embedding caches instead (it is not
        modified: the trained modules are copies; its current image is kept).
    epochs, lr, batch_size : training length, AdamW learning rate, objects per step.
    train_prompt_encoder : also train the prompt encoder's embeddings.
    val_fraction, split : share of the objects (``split="object"``) or of the images
        (``"image"``) held out for validation (seeded).  0: no validation, no early stop.
    patience : stop after this many epochs without a better validation score (the mean of
        the point and box mIoU); the best epoch's weights are written (epoch 0, the base
        model, when training never helped).
    corrective_clicks : up to this many corrective clicks simulated per training prompt.
    max_objects : at most this many objects per plane (seeded choice).
    seed : makes the split, the prompts and the batches (hence the result) reproducible.
    image_kwargs : dict or list of dicts given to ``set_image`` (``contrast_limits``,
        ``rgb``, ``channel_axis``, ``channel``), one for all images or one per image.
    names : names of the images for the card (default ``image0``, ``image1``...).
    cancel : ``threading.Event``, honoured between steps and inside encodes
        (:class:`~napari_sam2.engine.errors.Cancelled`; no file is left).
    progress : ``progress(done, total)`` after each encoded plane and each training step.
    """
    import torch

    t_start = time.perf_counter()
    if int(epochs) < 1 or int(batch_size) < 1 or not lr > 0 or int(patience) < 1:
        raise ValueError("epochs, batch_size and patience must be at least 1 and lr above 0.")
    if out is not None and Path(out).suffix.lower() == ".json":
        raise ValueError(f"out is the checkpoint (.pt), not its card: {out}")
    items = _items(images, labels, image_kwargs, planes, names)
    seg = _segmenter(segmenter, model, checkpoint, version, device, image_size, random_weights)
    backend = seg.backend
    dev = backend.device
    planes_ = fd.list_planes(seg, items)
    objects = fd.collect_objects(planes_, max_objects=max_objects, seed=seed)
    if not objects:
        raise LabelsError("The labels hold no object (of 4 pixels or more): nothing to learn.")
    train, val = fd.split_objects(objects, planes_, val_fraction, seed, split)
    n_steps = len(fd.batches(train, int(batch_size), np.random.default_rng(0)))
    total = len(planes_) + int(epochs) * n_steps
    done = [0]

    def tick(n=1):
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    fd.encode_planes(seg, planes_, dev, cancel=cancel, progress=lambda i, n: tick())
    base = backend.loaded.model
    trainer = Trainer(backend, base, train_prompt_encoder, lr, corrective_clicks)
    history = [{"epoch": 0, "train_loss": None, **trainer.validate(planes_, val)}]
    best, best_epoch, best_state, stale = _score(history[0]), 0, trainer.state(), 0
    rng = np.random.default_rng(seed)
    for epoch in range(1, int(epochs) + 1):
        losses = []
        for batch in fd.batches(train, int(batch_size), rng):
            _check(cancel)
            losses.append(trainer.step(planes_, batch, rng))
            tick()
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                **trainer.validate(planes_, val),
            }
        )
        score = _score(history[-1])
        if not val or score > best:
            best, best_epoch, best_state, stale = score, epoch, trainer.state(), 0
        else:
            stale += 1
            if stale >= int(patience):
                tick(total - done[0])
                break
    _check(cancel)
    trainer.load(best_state)
    card = _card(
        backend, items, planes_, train, val, history, best_epoch, seed, epochs, lr, batch_size,
        train_prompt_encoder, corrective_clicks, split, time.perf_counter() - t_start,
    )  # fmt: skip
    result = FinetuneResult(None, None, card, history, best_epoch)
    if out is not None:
        sd = trainer.full_state_dict(base)
        result.checkpoint = save_checkpoint(sd, out, cancel=cancel)
        del sd

        card["checkpoint_sha256"] = file_sha256(result.checkpoint)
        card["checkpoint"] = str(result.checkpoint)
        result.card_path = _write_text(card_path_for(out), json.dumps(card, indent=1))
    with contextlib.suppress(Exception):
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return result


# ------------------------------------------------------------------------------ helpers
def _items(images, labels, image_kwargs, planes, names):
    one = not isinstance(images, (list, tuple))
    images = [images] if one else list(images)
    labels = [labels] if one else list(labels)
    if len(images) != len(labels):
        raise LabelsError(f"{len(images)} image(s) but {len(labels)} labels array(s).")
    if not images:
        raise LabelsError("No image given.")
    n = len(images)
    kws = image_kwargs if isinstance(image_kwargs, (list, tuple)) else [image_kwargs] * n
    pls = [planes] if (one and planes is not None) else (planes or [None] * n)
    nms = list(names) if names is not None else [f"image{i}" for i in range(n)]
    if not len(kws) == len(pls) == len(nms) == n:
        raise ValueError("image_kwargs, planes and names need one entry per image.")
    return list(zip(images, labels, kws, pls, nms, strict=True))


def _segmenter(segmenter, model, checkpoint, version, device, image_size, random_weights):

    if segmenter is not None:  # a sibling: same model and caches (thread-safe), own image
        seg = Segmenter(predictor=segmenter.backend, disk_cache=_disk(segmenter))
        seg.cache = segmenter.cache  # planes already encoded are not encoded again
    else:
        seg = Segmenter(
            model, checkpoint, backend="sam2", version=version, device=device,
            image_size=image_size, random_weights=random_weights,
        )  # fmt: skip
    if not capability(seg.backend, "trainable"):
        raise ModelError(
            "Fine-tuning needs a SAM 2 model: load a SAM 2 checkpoint (the classical backend "
            "has nothing to train)."
        )
    return seg


def _score(h: dict) -> float:
    vals = [h[k] for k in ("val_point", "val_box") if h.get(k) is not None]
    return float(np.mean(vals)) if vals else 0.0


def _check(cancel) -> None:
    check_cancel(cancel, "Fine-tuning cancelled: no checkpoint was written.")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_checkpoint(state_dict: dict, out, *, cancel=None) -> Path:
    """Write ``{"model": state_dict}`` to ``out`` atomically (temporary name, then rename)."""
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(out)
    try:
        torch.save({"model": state_dict}, tmp)
        _check(cancel)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return out


def _write_text(path: Path, text: str) -> Path:
    tmp = _tmp_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def _card(backend, items, planes, train, val, history, best_epoch, seed, epochs, lr,
          batch_size, train_pe, n_corr, split, seconds) -> dict:  # fmt: skip
    from importlib import metadata

    d = backend.describe()
    versions = {}
    for dist in ("napari-sam2", "torch", "sam2"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    best = history[best_epoch]
    return {
        "kind": "napari-sam2 fine-tuned SAM 2 checkpoint",
        "base_model": d.get("model"),
        "size": d.get("size"),
        "version": d.get("version"),
        "base_checkpoint": d.get("checkpoint"),
        "base_checkpoint_sha256": d.get("checkpoint_sha256"),
        "random_weights": d.get("random_weights"),
        "image_size": d.get("image_size"),
        "device": d.get("device"),
        "trained": ["mask decoder"] + (["prompt encoder"] if train_pe else []),
        "data": [
            {"name": name, "planes": [list(p.index) for p in planes if p.name == name]}
            for *_, name in items
        ],
        "n_planes": len(planes),
        "n_objects": len(train) + len(val),
        "n_train_objects": len(train),
        "n_val_objects": len(val),
        "split": split,
        "epochs": int(epochs),
        "epochs_run": len(history) - 1,
        "best_epoch": best_epoch,
        "lr": float(lr),
        "batch_size": int(batch_size),
        "corrective_clicks": int(n_corr),
        "seed": int(seed),
        "val_miou_before": {"point": history[0]["val_point"], "box": history[0]["val_box"]},
        "val_miou_after": {"point": best["val_point"], "box": best["val_box"]},
        "history": history,
        "seconds": round(float(seconds), 2),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": versions,
    }


def _disk(segmenter):
    return segmenter.disk_cache if segmenter.disk_cache is not None else False
