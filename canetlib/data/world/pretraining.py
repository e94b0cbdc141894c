"""The pretraining pool: one glyph per sample, of classes disjoint from the world's 20.

The offline backbone's pretraining data (:mod:`canetlib.training.pretrain`): the miniature
of ImageNet pretraining. Its classes are ``PRETRAIN_GLYPHS`` (see
:mod:`canetlib.data.world.catalog` for the rule that keeps every one of the 20
categories and their look-alikes out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from canetlib.data.world.catalog import CLASS_GLYPHS, PRETRAIN_GLYPHS, glyph_name
from canetlib.data.world.layout import SceneLayout, single_object_layout
from canetlib.data.world.render import compose_scene, procedural_background


class PretrainingPool(torch.utils.data.Dataset):
    """Deterministic (image, label, mask) samples of glyph classes disjoint from the 20.

    The offline backbone's pretraining data (the miniature of ImageNet pretraining:
    CANet's backbone is pretrained, then frozen, paper section 5.1). Sample ``i`` shows one
    glyph of class ``i % num_classes`` (random size, rotation, flip, colour jitter and
    position) on a procedural background; it is a pure function of (seed, split, i).

    ``pool[i]`` returns ``(image, label, mask)``: ImageNet-normalised float32
    ``(3, S, S)``, an int, and an int64 ``(S, S)`` mask (1 object, 0 background).
    :meth:`sample` gives the raw uint8 image and mask. Glyphs are rasterised on first
    use (about 30 ms each, then cached on disk).
    """

    def __init__(
        self,
        split: str = "train",
        images_per_class: int = 20,
        seed: int = 0,
        image_size: int = 128,
        glyphs: Sequence[str] = PRETRAIN_GLYPHS,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"PretrainingPool: split must be 'train' or 'val', got {split!r}")
        if images_per_class < 1 or image_size < 32 or seed < 0:
            raise ValueError(
                "PretrainingPool: need images_per_class >= 1, image_size >= 32, seed >= 0"
            )
        used = {g for gs in CLASS_GLYPHS.values() for g in gs}
        clash = sorted(set(glyphs) & used)
        if clash:
            raise ValueError(f"PretrainingPool: glyphs {clash} belong to the 20 world classes")
        self.split = split
        self.images_per_class = int(images_per_class)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.glyphs: tuple[str, ...] = tuple(glyphs)
        self.class_names: tuple[str, ...] = tuple(glyph_name(g) for g in self.glyphs)

    @property
    def num_classes(self) -> int:
        return len(self.glyphs)

    def __len__(self) -> int:
        return self.num_classes * self.images_per_class

    def layout(self, index: int) -> SceneLayout:
        """Pixel-free description of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"PretrainingPool index {index} out of range 0..{len(self) - 1}")
        label = index % self.num_classes
        return single_object_layout(self._rng(index, 0), self.image_size, label,
                                    self.glyphs[label])

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        tag = 1 if self.split == "train" else 2
        return np.random.default_rng(np.random.SeedSequence([self.seed, 7919, tag, index, stream]))

    def sample(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """``(image (S, S, 3) uint8, label, mask (S, S) uint8 in {0, 1})``."""
        layout = self.layout(index)
        background = procedural_background(self._rng(index, 1), layout.height, layout.width)
        image, objmap = compose_scene(layout, background)
        assert image is not None
        return image, index % self.num_classes, (objmap > 0).astype(np.uint8)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        from canetlib.data.episodes import image_to_tensor

        image, label, mask = self.sample(index)
        return image_to_tensor(image), label, torch.from_numpy(mask.astype(np.int64))
