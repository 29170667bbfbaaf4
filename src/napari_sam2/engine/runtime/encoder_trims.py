"""Exact trims of SAM 2's image encoder: the same numbers, less work per encode.

Two costs of every ``forward_image`` call do not depend on the image (measured in
docs/performance.md, "Encoder trims"):

- **Hiera's positional embedding** (``Hiera._get_pos_embed``): a bicubic upsampling of
  ``pos_embed`` to the token grid plus a tiled window embedding, recomputed on every
  encode.  It depends only on the weights and the grid size, so it is computed once and
  reused until a weight changes (``Tensor._version``) or the grid, device, dtype or
  autocast state differ.  With gradients enabled it is never cached (training).
- **The FPN neck's sine position encodings** (``PositionEmbeddingSine``): sam2 caches them
  but returns ``cache[key][None].repeat(B, 1, 1, 1)``, a full copy per level and encode
  (67 MB at the 256×256 level of a 1024 px input) that the image predictor then drops.
  An ``expand`` gives the same values without the copy.

Both return bit-identical tensors (tested against the untrimmed model), so masks remain
exactly those of ``SAM2ImagePredictor``.  :func:`untrim_encoder` restores the originals
(``torch.compile`` traces the plain functions).
"""

from __future__ import annotations

_MARK = "_napari_sam2_trims"


def trim_encoder(model) -> tuple[str, ...]:
    """Apply the exact trims to ``model`` (a ``SAM2Base``) in place; idempotent.

    Returns the names of the trims applied (empty where the model has no such parts).
    """
    enc = getattr(model, "image_encoder", None)
    if enc is None:
        return ()
    done = getattr(enc, _MARK, None)
    if done is not None:
        return tuple(done)
    applied = {}
    trunk = getattr(enc, "trunk", None)
    if trunk is not None and hasattr(trunk, "_get_pos_embed") and hasattr(trunk, "pos_embed"):
        applied["pos_embed_cache"] = (trunk, "_get_pos_embed", _cached_pos_embed(trunk))
    pe = getattr(getattr(enc, "neck", None), "position_encoding", None)
    if pe is not None and hasattr(pe, "_pe") and isinstance(getattr(pe, "cache", None), dict):
        applied["neck_pos_expand"] = (pe, "_pe", _expanding_pe(pe))
    for obj, attr, fn in applied.values():
        setattr(obj, attr, fn)  # an instance attribute: the class keeps its method
    setattr(enc, _MARK, tuple(applied))
    enc._napari_sam2_trim_targets = [(obj, attr) for obj, attr, _ in applied.values()]
    return tuple(applied)


def untrim_encoder(model) -> None:
    """Undo :func:`trim_encoder` (the class methods apply again)."""
    enc = getattr(model, "image_encoder", None)
    if enc is None or getattr(enc, _MARK, None) is None:
        return
    for obj, attr in enc._napari_sam2_trim_targets:
        if attr in vars(obj):
            delattr(obj, attr)
    del enc._napari_sam2_trim_targets
    delattr(enc, _MARK)


def _cached_pos_embed(trunk):
    import torch

    compute = type(trunk)._get_pos_embed
    cache: dict = {}

    def _get_pos_embed(hw):
        if torch.is_grad_enabled():
            return compute(trunk, hw)
        p, w = trunk.pos_embed, trunk.pos_embed_window
        key = (
            tuple(int(v) for v in hw),
            p.device,
            p.dtype,
            p.data_ptr(),
            p._version,
            w.data_ptr(),
            w._version,
            torch.is_autocast_enabled(p.device.type),
        )
        hit = cache.get(key)
        if hit is None:
            cache.clear()  # one grid at a time: a model runs at one input size
            hit = cache[key] = compute(trunk, hw)
        return hit

    return _get_pos_embed


def _expanding_pe(pe):
    compute = type(pe)._pe

    def _pe(B, device, *cache_key):
        if cache_key not in pe.cache:
            compute(pe, 1, device, *cache_key)  # fills pe.cache[cache_key]
        return pe.cache[cache_key].to(device)[None].expand(B, -1, -1, -1)

    return _pe
