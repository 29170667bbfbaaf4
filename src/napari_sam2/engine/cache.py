"""Embedding cache: encode a plane once.

An LRU cache bounded by bytes.  Keys are built by the caller from (plane content
signature, normalisation, model, device) — see :meth:`napari_sam2.engine.Segmenter` —
so a revisited plane is never re-encoded, and any change of pixels, window, model or
device gives a new key.  Counters let tests and benchmarks prove it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np


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
    disk_hits: int = 0  # persistent cache (engine/disk_cache.py), when enabled
    disk_misses: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class EmbeddingCache:
    """Thread-safe LRU mapping ``key -> embedding`` bounded by ``max_bytes``.

    An entry larger than the whole budget is not stored (it would evict everything).
    """

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
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
            return item[0]

    def put(self, key, value, nbytes: int | None = None) -> None:
        size = nbytes_of(value) if nbytes is None else int(nbytes)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, s) = self._items.popitem(last=False)
                self._bytes -= s
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
