"""Data: image sources (embedded world, PASCAL-5i, COCO-20i, FSS-1000, your folder) and episodes.

:func:`make_dataset` builds every episode set: ``make_dataset("synthetic", fold=0,
split="test", shots=1)`` by name, or ``make_dataset(source=src, split="test")`` from any
:class:`SegmentationSource` (your own images: :class:`ImageMaskSource`; to train on them
too, a folder with a class split: :class:`canetlib.data.folder.FolderSource`). See
:mod:`canetlib.data.episodes` for the episode protocol and item format and
:mod:`canetlib.data.world.synthetic` for the embedded world (OpenMoji glyphs, CC BY-SA 4.0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from canetlib.data.augment import SCALE_RANGE
from canetlib.data.episodes import (
    DEFAULT_TRAIN_SIZE,
    EpisodeDataset,
    EpisodeSpec,
    Item,
    collate_episodes,
    denormalise_image,
    image_to_tensor,
)
from canetlib.data.source import (
    PASCAL_CLASSES,
    SPLITS,
    ImageMaskSource,
    SegmentationSource,
)
from canetlib.data.world.catalog import CLASS_GLYPHS, PRETRAIN_GLYPHS
from canetlib.data.world.pretraining import PretrainingPool
from canetlib.data.world.synthetic import OPENMOJI_CREDIT, SyntheticSource
from canetlib.model.inputs import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

#: Names accepted by :func:`make_dataset` / :func:`make_source`.
DATASET_NAMES: tuple[str, ...] = ("synthetic", "pascal", "coco", "folder", "fss1000")
#: datasets whose source is built for one fold (:func:`make_dataset` passes ``fold`` on)
FOLD_SOURCES: tuple[str, ...] = ("folder", "fss1000")


def make_source(name: str, root: str | None = None, **kwargs: Any) -> SegmentationSource:
    """Build the image source ``name``.

    ``synthetic``: ``SyntheticSource(cache_dir=root, **kwargs)`` (``root`` optional);
    ``pascal``: ``PascalSource(root, **kwargs)``; ``coco``:
    ``CocoSource(root, split_scheme="interleaved", **kwargs)``; ``folder``:
    ``FolderSource(root, **kwargs)`` (your images, masks and ``split.json``); ``fss1000``:
    ``FSS1000Source(root, **kwargs)``. The others need ``root`` and are imported lazily.
    """
    if name == "synthetic":
        return SyntheticSource(cache_dir=root, **kwargs)
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder holding its images and masks)")
    if name == "pascal":
        from canetlib.data.pascal import PascalSource

        return PascalSource(root, **kwargs)
    if name == "folder":
        from canetlib.data.folder import FolderSource

        return FolderSource(root, **kwargs)
    if name == "fss1000":
        from canetlib.data.fss1000 import FSS1000Source

        return FSS1000Source(root, **kwargs)
    from canetlib.data.coco import CocoSource

    kwargs.setdefault("split_scheme", "interleaved")
    return CocoSource(root, **kwargs)


def make_dataset(
    name: str | None = None,
    root: str | None = None,
    fold: int = 0,
    split: str = "train",
    shots: int = 1,
    episodes: int = 1000,
    seed: int = 0,
    *,
    source: SegmentationSource | None = None,
    box_support: bool = False,
    train_size: int = DEFAULT_TRAIN_SIZE,
    transform: Callable[[Item], Item] | None = None,
    support_damage: float = 0.0,
    **source_kwargs: Any,
) -> EpisodeDataset:
    """Seeded few-shot episodes of dataset ``name`` (one of :data:`DATASET_NAMES`) or of
    ``source``, any :class:`SegmentationSource` (``name`` is then ignored).

    ``box_support``, ``train_size``, ``transform`` and ``support_damage`` go to
    :class:`EpisodeDataset`,
    every other keyword to the source constructor. ``seed`` is the episode seed; the
    synthetic world's own seed is ``world_seed=``.
    """
    if source is None:
        if name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}"
                             " (or pass source= for your own SegmentationSource)")
        if name == "synthetic" and "world_seed" in source_kwargs:
            source_kwargs["seed"] = source_kwargs.pop("world_seed")
        if name in FOLD_SOURCES:
            source_kwargs.setdefault("fold", fold)
        source = make_source(name, root, **source_kwargs)
    elif source_kwargs:
        raise ValueError(f"source= given, so source options {sorted(source_kwargs)} "
                         "cannot be applied")
    return EpisodeDataset(source, fold, split, shots, episodes, seed, box_support=box_support,
                          train_size=train_size, transform=transform,
                          support_damage=support_damage)


__all__ = [
    "CLASS_GLYPHS",
    "DATASET_NAMES",
    "DEFAULT_TRAIN_SIZE",
    "FOLD_SOURCES",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENMOJI_CREDIT",
    "PASCAL_CLASSES",
    "PRETRAIN_GLYPHS",
    "SCALE_RANGE",
    "SPLITS",
    "EpisodeDataset",
    "EpisodeSpec",
    "ImageMaskSource",
    "PretrainingPool",
    "SegmentationSource",
    "SyntheticSource",
    "collate_episodes",
    "denormalise_image",
    "image_to_tensor",
    "make_dataset",
    "make_source",
]
