"""Training augmentation of episode images: the reference recipe, with torchvision v2."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

#: Support (and query) rescaling range of the reference training augmentation.
SCALE_RANGE: tuple[float, float] = (1.0, 1.5)
#: Crops tried before accepting one that shows no target pixel.
_CROP_TRIES = 5


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the small augmentation ops on one torch thread (restored afterwards).

    Intra-op threads buy nothing on ~200 px tensors and, on a busy CPU, can cost tens
    of ms per episode in thread wake-ups (DataLoader workers already use one thread)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def augment(
    image: np.ndarray, masks: Sequence[np.ndarray], size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Reference training augmentation with ``torchvision.transforms.v2``: rescale to a
    square of ``size * s`` with ``s`` uniform in ``SCALE_RANGE``, random ``size``
    crop (retried up to ``_CROP_TRIES`` times until it keeps a target pixel of
    ``masks[0]``), random horizontal flip. Masks use nearest-neighbour resizing and
    keep their 255 pixels. Parameters come from ``rng`` only. Returns the ``(3, size,
    size)`` uint8 image tensor and the ``(size, size)`` masks."""
    img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    tv_masks = [tv_tensors.Mask(torch.from_numpy(m)[None]) for m in masks]
    side = max(size, round(size * rng.uniform(*SCALE_RANGE)))
    img = TF.resize(img, [side, side], antialias=True)
    tv_masks = [TF.resize(m, [side, side]) for m in tv_masks]
    top = left = 0
    for _ in range(_CROP_TRIES):
        top, left = (int(v) for v in rng.integers(0, side - size + 1, size=2))
        window = tv_masks[0][0, top : top + size, left : left + size]
        if (window == 1).any() or not (tv_masks[0] == 1).any():
            break
    img = TF.crop(img, top, left, size, size)
    tv_masks = [TF.crop(m, top, left, size, size) for m in tv_masks]
    if rng.random() < 0.5:
        img = TF.horizontal_flip(img)
        tv_masks = [TF.horizontal_flip(m) for m in tv_masks]
    return img.as_subclass(torch.Tensor), [m.as_subclass(torch.Tensor)[0] for m in tv_masks]
