"""Remember each test image's frozen features while a benchmark runs.

A benchmark draws its episodes from a fixed pool of test images, so the same image
comes back as a query or a support many times. The backbone is frozen and the
encoder is deterministic in eval mode, so an image's features do not change
during an evaluation: within :func:`feature_cache`, the model's ``extract``
computes them once per distinct image.

Images are recognised by a digest of their pixels (shape, dtype and bytes), so
nothing about ids or datasets has to be threaded through the model.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

#: default memory budget of a cache (beyond it, the least recently used images are dropped)
DEFAULT_MAX_BYTES = 2 * 1024 ** 3


def image_digest(image: Tensor) -> bytes:
    """A 16-byte digest of one image's shape, dtype and pixel values."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(image.shape), str(image.dtype))).encode())
    h.update(image.detach().contiguous().cpu().numpy().tobytes())
    return h.digest()


class FeatureCache:
    """A memoising wrapper around a ``compute(images) -> features`` function.

    Calls with a batch ``(N, 3, H, W)`` return the same ``(N, C, h, w)`` tensor
    ``compute`` would, computing only the images not seen before (in one batch).
    Least recently used entries are dropped once ``max_bytes`` is exceeded.
    ``hits`` and ``misses`` count images. While gradients are enabled, or while
    ``active()`` returns False (the model in training mode), it passes straight through.
    """

    def __init__(self, compute: Callable[[Tensor], Tensor],
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 active: Callable[[], bool] = lambda: True) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.compute = compute
        self.max_bytes = int(max_bytes)
        self.active = active
        self.hits = 0
        self.misses = 0
        self._store: OrderedDict[bytes, Tensor] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._store)

    def __call__(self, images: Tensor) -> Tensor:
        if torch.is_grad_enabled() or not self.active():
            return self.compute(images)
        keys = [image_digest(img) for img in images]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        found = {k: self._store[k] for k in first if k in self._store}
        todo = [k for k in first if k not in found]
        if todo:
            feats = self.compute(images[[first[k] for k in todo]])
            for k, f in zip(todo, feats):
                found[k] = f.clone()
                self._put(k, found[k])
        for k in found:
            if k in self._store:
                self._store.move_to_end(k)
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        return torch.stack([found[k] for k in keys])

    def _put(self, key: bytes, feats: Tensor) -> None:
        self._store[key] = feats
        self._bytes += feats.numel() * feats.element_size()
        while self._bytes > self.max_bytes and len(self._store) > 1:
            _, old = self._store.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()


@contextmanager
def feature_cache(model: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[FeatureCache]:
    """Within the block, ``model.extract`` computes each distinct image once.

    The cache sits in the model's ``extract_cache`` slot for the block (a
    :class:`~canetlib.CANet` or a :class:`~canetlib.model.baseline.PrototypeMatcher`);
    misses go to ``model.compute_features``. It only caches in eval mode without
    gradients; the cached features are those of the weights when they were computed.
    Nested use reuses the outer cache.
    """
    if not hasattr(model, "extract_cache"):
        raise TypeError(f"feature_cache needs a model with an extract_cache slot (a CANet or "
                        f"a PrototypeMatcher), got {type(model).__name__}")
    if model.extract_cache is not None:
        yield model.extract_cache
        return
    cache = FeatureCache(model.compute_features, max_bytes, active=lambda: not model.training)
    model.extract_cache = cache
    try:
        yield cache
    finally:
        model.extract_cache = None
