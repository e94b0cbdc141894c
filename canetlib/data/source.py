"""The contract between a labelled image collection and the episode sampler.

A :class:`SegmentationSource` knows how to read one image, its semantic mask
and its instance mask, and which (image, class) pairs it holds for a split.
The episode sampler (:mod:`canetlib.data.episodes`) turns any source into
seeded few-shot episodes; the embedded world, PASCAL-5i and COCO-20i are all
sources, so sampling, box supports and transforms exist once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

#: PASCAL VOC class names; class id ``i + 1`` is ``PASCAL_CLASSES[i]``.
PASCAL_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

#: ImageNet statistics used to normalise every image fed to the backbone.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Label for pixels that count in neither prediction nor truth (VOC borders).
IGNORE_INDEX = 255

SPLITS = ("train", "test")


class SegmentationSource(ABC):
    """A labelled image collection with 1-based class ids ``1..num_classes``.

    Subclasses implement reading; the fold logic below is shared. Image ids
    are strings that are unique inside the source.
    """

    #: short name used in messages ("synthetic", "pascal", "coco")
    name: str = "source"
    #: ``class_names[i]`` names class id ``i + 1``
    class_names: Sequence[str] = ()
    #: number of folds the classes are split into
    num_folds: int = 4

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def test_classes(self, fold: int) -> list[int]:
        """Class ids held out in ``fold`` (default: 5f+1..5f+5 style blocks)."""
        self._check_fold(fold)
        per = self.num_classes // self.num_folds
        return list(range(fold * per + 1, fold * per + per + 1))

    def train_classes(self, fold: int) -> list[int]:
        """Every class id that is not a test class of ``fold``."""
        held = set(self.test_classes(fold))
        return [c for c in range(1, self.num_classes + 1) if c not in held]

    def benchmark_train_classes(self, fold: int) -> list[int]:
        """The fold's training classes that belong to the benchmark proper (what
        class-level validation holds out); sources with extra base classes drop them."""
        return self.train_classes(fold)

    def classes(self, fold: int, split: str) -> list[int]:
        """Training classes for ``split="train"``, test classes for ``"test"``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.train_classes(fold) if split == "train" else self.test_classes(fold)

    def _check_fold(self, fold: int) -> None:
        if not 0 <= fold < self.num_folds:
            raise ValueError(f"{self.name}: fold must be in 0..{self.num_folds - 1}, got {fold}")

    @abstractmethod
    def image_pairs(self, split: str) -> list[tuple[str, int]]:
        """All (image id, class id) pairs of the split's image pool, any class.

        ``split="train"`` is the training image pool, ``"test"`` the test image
        pool (VOC2012 val for PASCAL). Pairs that fail the source's size rule
        are already dropped. The sampler keeps the pairs whose class belongs to
        the fold's classes for that split.
        """

    @abstractmethod
    def load_image(self, image_id: str) -> np.ndarray:
        """RGB image, ``(H, W, 3)`` uint8 (grayscale/RGBA/16-bit converted)."""

    @abstractmethod
    def load_mask(self, image_id: str) -> np.ndarray:
        """Semantic mask, ``(H, W)`` uint8: 0 background, class ids, 255 ignore."""

    @abstractmethod
    def load_instances(self, image_id: str, class_id: int) -> np.ndarray:
        """Instance ids of ``class_id``'s objects, ``(H, W)`` int32, 0 elsewhere.

        Used for bounding-box supports (paper section 4.4): the box of one
        randomly chosen instance becomes the support mask.
        """


class DelegatingSource(SegmentationSource):
    """A source that forwards everything to ``inner`` (base of the source wrappers)."""

    def __init__(self, inner: SegmentationSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.class_names = inner.class_names
        self.num_folds = inner.num_folds

    def test_classes(self, fold: int) -> list[int]:
        return self.inner.test_classes(fold)

    def train_classes(self, fold: int) -> list[int]:
        return self.inner.train_classes(fold)

    def benchmark_train_classes(self, fold: int) -> list[int]:
        return self.inner.benchmark_train_classes(fold)

    def image_pairs(self, split: str) -> list[tuple[str, int]]:
        return self.inner.image_pairs(split)

    def load_image(self, image_id: str) -> np.ndarray:
        return self.inner.load_image(image_id)

    def load_mask(self, image_id: str) -> np.ndarray:
        return self.inner.load_mask(image_id)

    def load_instances(self, image_id: str, class_id: int) -> np.ndarray:
        return self.inner.load_instances(image_id, class_id)


class TrainingClassesAsTest(DelegatingSource):
    """The training pool and a fold's training classes, presented as its test split.

    Test-style episodes (no augmentation, original sizes) of classes a model
    *is* trained on, drawn from images it is trained on: what a parameter that
    must not see the test classes (the prototype baseline's threshold, say)
    is chosen on. ``make_dataset(..., split="test", source=TrainingClassesAsTest(src))``.
    """

    def test_classes(self, fold: int) -> list[int]:
        return self.inner.train_classes(fold)

    def image_pairs(self, split: str) -> list[tuple[str, int]]:
        return self.inner.image_pairs("train")
