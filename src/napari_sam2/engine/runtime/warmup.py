"""Pay a model's one-off costs before the user's first click.

The first encode after a model loads is about twice as slow as the later ones (thread
pools, oneDNN kernel selection, allocator growth, lazy CUDA/cuDNN initialisation).
:func:`warm_up` encodes one blank plane at the model's input size and decodes one click on
it, straight through the backend: the segmenter's embedding cache, disk cache and counters
are not touched.  It holds the backend's lock like any encode, so a click during the
warm-up waits for it (or cancels it) and never races it on the model.
"""

from __future__ import annotations

import time

import numpy as np

from ..cancel import check_cancel
from ..prompts import make_objects

DEFAULT_SIZE = 256  # backends without a fixed input size (classical)


def warm_up(backend, *, cancel=None) -> float:
    """Encode a blank plane and decode one click with ``backend``; returns the seconds.

    ``cancel`` (a ``threading.Event``) stops it between encoder blocks with
    :class:`~napari_sam2.engine.errors.Cancelled`; nothing is cached either way.
    """
    t0 = time.perf_counter()
    s = int(getattr(backend, "image_size", None) or DEFAULT_SIZE)
    image = np.zeros((s, s, 3), np.float32)
    image[s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 0.5  # something for the decoder
    check_cancel(cancel, "Warm-up cancelled.")
    emb = backend.encode(image, cancel=cancel)
    check_cancel(cancel, "Warm-up cancelled.")
    backend.predict(emb, make_objects([(s / 2, s / 2)], [1]), multimask=None)
    return time.perf_counter() - t0
