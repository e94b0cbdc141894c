"""The contract between a labelled image collection and the episode sampler.

A :class:`SegmentationSource` knows how to read one image, its semantic mask
and its instance mask, and which (image, class) pairs it holds for a split.
The episode sampler (:mod:`canetlib.data.episodes`) turns any source into
seeded few-shot episodes; the embedded world, PASCAL-5i and COCO-20i are all
sources, so sampling, box supports and transforms exist once.
:class:`ImageMaskSource` holds your own images and masks (arrays or files).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from canetlib.data.imageio import image_size, read_image, read_mask
from canetlib.model.inputs import IGNORE_INDEX

#: PASCAL VOC class names; class id ``i + 1`` is ``PASCAL_CLASSES[i]``.
PASCAL_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

SPLITS = ("train", "test")


class SegmentationSource(ABC):
    """A labelled image collection with 1-based class ids ``1..num_classes``.

    The minimal interface, for your own images (see :class:`ImageMaskSource`
    for a ready-made one):

    * ``class_names``: ``class_names[i]`` names class id ``i + 1``;
    * :meth:`image_pairs` ``(split) -> [(image_id, class_id), ...]``; a
      test-only source returns ``[]`` for ``"train"``;
    * :meth:`load_image` ``(image_id) -> (H, W, 3) uint8`` and :meth:`load_mask`
      ``(image_id) -> (H, W) uint8`` (0 background, class ids, 255 ignore);
    * ``num_folds = 1`` to make every class a test class of fold 0 (else the
      classes are cut into ``num_folds`` blocks; override :meth:`test_classes`
      for another split).

    :meth:`load_instances` (box supports only) defaults to the connected
    components of the class. ``name`` only labels messages. Image ids are
    strings, unique inside the source.
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
        if per == 0:
            raise ValueError(f"{self.name}: {self.num_classes} class(es) cannot fill "
                             f"{self.num_folds} folds; set num_folds = 1 (every class a test "
                             "class) or override test_classes")
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

    def load_instances(self, image_id: str, class_id: int) -> np.ndarray:
        """Instance ids of ``class_id``'s objects, ``(H, W)`` int32, 0 elsewhere.

        Used for bounding-box supports (paper section 4.4): the box of one
        randomly chosen instance becomes the support mask. Default: the
        connected components of the class's pixels.
        """
        from scipy import ndimage

        labels, _ = ndimage.label(self.load_mask(image_id) == class_id)
        return labels.astype(np.int32)


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


#: an in-memory array or the path of a file holding it
ArrayOrPath = np.ndarray | str | os.PathLike
#: image suffixes :meth:`ImageMaskSource.from_folder` reads
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _keyed(values: Mapping[str, ArrayOrPath] | Sequence[ArrayOrPath]) -> dict[str, ArrayOrPath]:
    if isinstance(values, Mapping):
        return {str(k): v for k, v in values.items()}
    return {str(i): v for i, v in enumerate(values)}


def _is_path(value: object) -> bool:
    return isinstance(value, (str, os.PathLike))


class ImageMaskSource(SegmentationSource):
    """Your own labelled images, in memory or in a folder: a test-only source.

    Every class is a test class of fold 0 (``num_folds = 1``); there is no
    training pool. An image holds the classes its mask shows.

    Args:
        images: ``{image_id: image}`` or a sequence (ids ``"0"``, ``"1"``, ...);
            an image is ``(H, W, 3)`` (or ``(H, W)`` grey) uint8, or a file path.
        masks: the same ids, ``(H, W)`` uint8 (0 background, ``1..len(class_names)``,
            255 ignore), or PNG paths.
        class_names: ``class_names[i]`` names class id ``i + 1``.
        name: labels messages.
    """

    num_folds = 1

    def __init__(self, images: Mapping[str, ArrayOrPath] | Sequence[ArrayOrPath],
                 masks: Mapping[str, ArrayOrPath] | Sequence[ArrayOrPath],
                 class_names: Sequence[str], name: str = "own") -> None:
        self.name = str(name)
        self.class_names = tuple(str(c) for c in class_names)
        if not self.class_names:
            raise ValueError(f"{self.name}: class_names is empty")
        self._images, self._masks = _keyed(images), _keyed(masks)
        if set(self._images) != set(self._masks):
            odd = sorted(set(self._images) ^ set(self._masks))
            raise ValueError(f"{self.name}: images and masks differ in ids, e.g. {odd[:3]}")
        known = set(range(1, self.num_classes + 1))
        self._pairs: list[tuple[str, int]] = []
        for image_id in sorted(self._images):
            present = {int(v) for v in np.unique(self.load_mask(image_id))} - {0, IGNORE_INDEX}
            if present - known:
                raise ValueError(f"{self.name}: mask {image_id!r} holds class ids "
                                 f"{sorted(present - known)} beyond 1..{self.num_classes}")
            self._pairs += [(image_id, c) for c in sorted(present)]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, class_names: Sequence[str], *,
                    images: str = "images", masks: str = "masks",
                    name: str | None = None) -> ImageMaskSource:
        """``folder/images/ID.jpg`` (any of :data:`IMAGE_SUFFIXES`) with ``folder/masks/ID.png``;
        files are read when an episode needs them."""
        root = Path(folder)
        mask_files = {p.stem: p for p in sorted((root / masks).glob("*.png"))}
        image_files = {p.stem: p for p in sorted((root / images).glob("*"))
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in mask_files}
        if not image_files:
            raise ValueError(f"{root}: no image in {images}/ has a mask of the same name in "
                             f"{masks}/ (ID.png)")
        return cls(image_files, {k: mask_files[k] for k in image_files}, class_names,
                   name=name or root.name)

    def image_pairs(self, split: str) -> list[tuple[str, int]]:
        """Every (image, class) pair for ``"test"``; no training pool."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return list(self._pairs) if split == "test" else []

    def load_image(self, image_id: str) -> np.ndarray:
        value = self._images[image_id]
        image = read_image(value) if _is_path(value) else np.asarray(value)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{self.name}: image {image_id!r} is {image.dtype} "
                             f"{image.shape}, not (H, W, 3) uint8")
        return image

    def load_mask(self, image_id: str) -> np.ndarray:
        value = self._masks[image_id]
        mask = read_mask(value) if _is_path(value) else np.asarray(value)
        size = self._image_size(image_id)
        if mask.ndim != 2 or mask.shape != size or mask.dtype != np.uint8:
            raise ValueError(f"{self.name}: mask {image_id!r} is {mask.dtype} {mask.shape}, "
                             f"not {size} uint8 like its image")
        return mask

    def _image_size(self, image_id: str) -> tuple[int, int]:
        value = self._images[image_id]
        if not _is_path(value):
            return tuple(np.shape(value)[:2])  # type: ignore[return-value]
        return image_size(value)  # the header only
