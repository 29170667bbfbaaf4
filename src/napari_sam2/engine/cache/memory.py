"""Embedding cache: encode a plane once.

An LRU cache bounded by bytes.  Keys are built by the caller from (plane content
signature, normalisation, model, device) — see :meth:`napari_sam2.engine.Segmenter` —
so a revisited plane is never re-encoded, and any change of pixels, window, model or
device gives a new key.  Counters let tests and benchmarks prove it.

``store_dtype="fp16"`` keeps float32 torch tensors in half precision (half the bytes, so
twice the planes in the same budget) and gives them back as float32; masks agree with
float32-stored embeddings on ≥ 99.5 % of pixels (tests/test_precision_cache.py,
docs/performance.md).  ``None`` stores what it is given.  The ``Segmenter`` uses fp16 on
GPUs and ``None`` on CPUs (exact parity with sam2's own predictor there).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

STORE_DTYPES = (None, "fp16", "bf16")
_FP16_MAX = 60000.0  # tensors with larger values stay float32 (fp16 tops out at 65504)


class _Packed(tuple):
    """A tensor stored in a narrower dtype, with the dtype to give back."""

    __slots__ = ()


def _pack(obj, dtype):
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.dtype != torch.float32:
            return obj
        if dtype == torch.float16 and obj.numel() and float(obj.abs().max()) > _FP16_MAX:
            return obj
        return _Packed((obj.to(dtype), obj.dtype))
    if isinstance(obj, dict):
        return {k: _pack(v, dtype) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack(v, dtype) for v in obj)
    return obj


def _unpack(obj):
    if isinstance(obj, _Packed):
        return obj[0].to(obj[1])
    if isinstance(obj, dict):
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unpack(v) for v in obj)
    return obj


def _has_packed(obj) -> bool:
    if isinstance(obj, _Packed):
        return True
    if isinstance(obj, dict):
        return any(_has_packed(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_packed(v) for v in obj)
    return False


def _restored_bytes(obj) -> int:
    """Bytes the restored copies of the packed tensors take (the rest is shared)."""
    if isinstance(obj, _Packed):
        return int(obj[0].numel() * obj[0].new_empty((), dtype=obj[1]).element_size())
    if isinstance(obj, dict):
        return sum(_restored_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_restored_bytes(v) for v in obj)
    return 0


def nbytes_of(obj: Any) -> int:
    """Bytes held by tensors/arrays inside nested dicts/lists/tuples."""
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):  # torch.Tensor
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(nbytes_of(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes_of(v) for v in obj)
    return 0


@dataclass
class CacheStats:
    encodes: int = 0
    hits: int = 0
    evictions: int = 0
    last_encode_s: float = 0.0
    disk_hits: int = 0  # persistent cache (engine/cache/disk.py), when enabled
    disk_misses: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class EmbeddingCache:
    """Thread-safe LRU mapping ``key -> embedding`` bounded by ``max_bytes``.

    An entry larger than the whole budget is not stored (it would evict everything).
    ``store_dtype``: ``"fp16"``/``"bf16"`` store float32 torch tensors in that dtype and
    give them back as float32; ``None`` stores as given.  The most recently used entry is
    also kept restored (float32), so repeated clicks on one plane pay no conversion.
    :attr:`nbytes` counts what is held: the stored entries plus that one restored copy.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3, store_dtype: str | None = "fp16"):
        if store_dtype not in STORE_DTYPES:
            raise ValueError(f"store_dtype must be one of {STORE_DTYPES}, not {store_dtype!r}.")
        self.max_bytes = int(max_bytes)
        self.store_dtype = store_dtype
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._hot: tuple[Any, Any, int] | None = None  # (key, restored value, bytes)
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key):
        """The cached embedding (counts a hit), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            if self._hot is not None and self._hot[0] == key:
                return self._hot[1]
            value = item[0]
        if not _has_packed(value):
            return value
        out = _unpack(value)
        with self._lock:
            if key in self._items:
                self._set_hot(key, out, _restored_bytes(value))
        return out

    def put(self, key, value, nbytes: int | None = None):
        """Store ``value``; returns it as :meth:`get` will give it back (so a first use
        and a revisit see the same numbers)."""
        stored = self._pack(value)
        size = nbytes_of(stored) if nbytes is None else int(nbytes)
        packed = stored is not value and _has_packed(stored)
        out = _unpack(stored) if packed else value
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
                self._drop_hot(key)
            if size > self.max_bytes:
                return out
            self._items[key] = (stored, size)
            self._bytes += size
            self._evict()
            if packed and key in self._items:
                self._set_hot(key, out, _restored_bytes(stored))
        return out

    # the three helpers below run under the lock
    def _set_hot(self, key, out, size: int) -> None:
        self._drop_hot()
        self._hot = (key, out, size)
        self._bytes += size
        self._evict()

    def _drop_hot(self, key=None) -> None:
        if self._hot is not None and (key is None or self._hot[0] == key):
            self._bytes -= self._hot[2]
            self._hot = None

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._items:
            k, (_, s) = self._items.popitem(last=False)
            self._bytes -= s
            self._drop_hot(k)
            self.stats.evictions += 1

    def _pack(self, value):
        if self.store_dtype is None:
            return value
        try:
            import torch
        except ImportError:  # numpy-only embeddings (classical backend) are stored as given
            return value
        dtype = torch.float16 if self.store_dtype == "fp16" else torch.bfloat16
        return _pack(value, dtype)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._hot = None
            self._bytes = 0
