"""Seeded few-shot episodes over any :class:`SegmentationSource`.

An episode (paper section 3, "task description") is a query image of class ``c``
with its binary mask, and ``k`` support images of the same class with their masks
(pixel-wise, or the filled box of one instance for the bounding-box experiment of
section 4.4). Test episodes draw the class first, one of the field's two conventions
(the reference code instead takes the first 1000 (image, class) pairs of a list, so
frequent classes get more episodes):

* **test**: episode ``i`` is a pure function of (source, fold, shots, seed, i):
  the class is drawn uniformly from the fold's test classes, the query uniformly
  from that class's images, the supports are the first ``k`` images of a seeded
  permutation of the other images of the class (so the 1-shot support is the first
  5-shot support and the queries do not depend on ``shots``). No augmentation;
  images and masks keep their original size (IoU is measured at original size).
* **train**: ``episodes`` is the epoch length. Episode ``i`` always has the same
  query (image, class) and the same query augmentation, a function of (seed, i),
  so that a trainer's per-sample memory (the previous epoch's prediction fed to the
  IOM, paper section 4.2) refers to the same, identically cropped query. Queries
  walk a seeded permutation of ``pairs`` (``episodes = len(dataset.pairs)`` shows
  every pair once per epoch). Supports, the box instance and support augmentation
  are drawn from (seed, epoch, i); call :meth:`EpisodeDataset.set_epoch` before each
  epoch (a resumed run reproduces the exact sampling). With persistent DataLoader
  workers ``set_epoch`` on the main-process dataset does not reach the workers.

Random numbers come only from ``numpy.random.Generator`` objects seeded by
``SeedSequence`` keys, never from global state, so episodes do not depend on
DataLoader worker order.

Items are dicts (shapes for one item; ``k`` = shots):

===================== ===================================================================
``query_image``        (3, H, W) float32, ImageNet-normalised
``query_mask``         (H, W) int64: 0 background, 1 target class, 255 ignore
``query_all_objects``  (H, W) int64: 1 any object of any class, 0 background, 255 ignore
``support_images``     (k, 3, H', W') float32, or a list of k (3, H_j, W_j) tensors when
                       test-time supports differ in size
``support_masks``      (k, H', W') int64 (0/1/255; 0/1 for box supports), or a list
``class_id``           int, global 1-based class id
``query_id``           str
``support_ids``        list of k str
``index``              int, episode index within the epoch
``support_damage``     list of k str, what spoiled each support (``""``: intact); only with
                       ``support_damage > 0``
===================== ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from canetlib.data.augment import augment, single_torch_thread
from canetlib.data.damage import damage_supports
from canetlib.data.source import SPLITS, SegmentationSource
from canetlib.model.inputs import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

#: Default training crop, as in the paper (321 x 321).
DEFAULT_TRAIN_SIZE = 321

_SPLIT_TAG = {"train": 1, "test": 2}
_QUERY, _SUPPORT, _BOX, _AUG_QUERY, _AUG_SUPPORT, _ORDER, _DAMAGE = range(7)

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32) * np.float32(255.0)
_INV_STD = np.float32(1.0) / (np.array(IMAGENET_STD, dtype=np.float32) * np.float32(255.0))

Item = dict[str, Any]


# --- small conversions ---------------------------------------------------------------------
def normalise_image(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 to ImageNet-normalised ``(3, H, W)`` float32 (numpy, one thread)."""
    out = (image.astype(np.float32) - _MEAN) * _INV_STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def image_to_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(H, W, 3)`` uint8 array (or ``(3, H, W)`` uint8 tensor) to ImageNet-normalised
    ``(3, H, W)`` float32 tensor."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy().transpose(1, 2, 0)
    return torch.from_numpy(normalise_image(np.asarray(image)))


def denormalise_image(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`image_to_tensor`: ``(3, H, W)`` normalised -> float RGB in [0, 1]
    (same device)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image.float() * std + mean).clamp(0, 1)


def target_mask(semantic: np.ndarray, class_id: int) -> np.ndarray:
    """Binary episode mask of ``class_id``: 1 on it, 255 where ignored, 0 elsewhere
    (objects of other classes are background, as in PASCAL-5i)."""
    out = (semantic == class_id).astype(np.int64)
    out[semantic == IGNORE_INDEX] = IGNORE_INDEX
    return out


def all_objects_mask(semantic: np.ndarray) -> np.ndarray:
    """1 on any object of any class, 0 on background, 255 where ignored."""
    out = (semantic != 0).astype(np.int64)
    out[semantic == IGNORE_INDEX] = IGNORE_INDEX
    return out


def box_mask(instances: np.ndarray, instance_id: int) -> np.ndarray:
    """Filled bounding box of one instance: 1 inside, 0 outside (paper section 4.4)."""
    ys, xs = np.nonzero(instances == instance_id)
    if ys.size == 0:
        raise ValueError(f"instance {instance_id} has no pixels")
    out = np.zeros(instances.shape, dtype=np.int64)
    out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
    return out


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


@dataclass(frozen=True)
class EpisodeSpec:
    """Which images make episode ``index`` (no pixels loaded)."""

    index: int
    class_id: int
    query_id: str
    support_ids: tuple[str, ...]


# --- the dataset -----------------------------------------------------------------------------
class EpisodeDataset(Dataset[Item]):
    """Few-shot episodes of ``source`` for one fold and split (see the module docstring).

    Args:
        source: any :class:`SegmentationSource`.
        fold: fold index; ``split="train"`` samples the fold's training classes from
            the training pool, ``"test"`` its test classes from the test pool.
        split: ``"train"`` or ``"test"``.
        shots: supports per episode (k).
        episodes: number of episodes (the epoch length for training).
        seed: sampling seed (>= 0).
        box_support: support masks are the filled box of one seeded random instance.
        train_size: side of the square training crops (ignored at test time).
        transform: optional callable applied to each finished item dict (last step).
        support_damage: probability that a support is made small, truncated or occluded
            (:mod:`canetlib.data.damage`; seeded per episode, and per epoch in training);
            ``0``, the benchmark: never.

    Raises:
        ValueError: bad arguments, or a class with fewer than ``shots + 1`` images in
            the pool (a query and ``shots`` distinct other supports are needed).
    """

    def __init__(
        self,
        source: SegmentationSource,
        fold: int,
        split: str,
        shots: int,
        episodes: int,
        seed: int,
        box_support: bool = False,
        train_size: int = DEFAULT_TRAIN_SIZE,
        transform: Callable[[Item], Item] | None = None,
        support_damage: float = 0.0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        for label, value, low in (
            ("shots", shots, 1),
            ("episodes", episodes, 1),
            ("seed", seed, 0),
        ):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= support_damage <= 1.0:
            raise ValueError(f"support_damage must be in [0, 1], got {support_damage!r}")
        if split == "train" and (not isinstance(train_size, (int, np.integer)) or train_size < 8):
            raise ValueError(f"train_size must be an integer >= 8, got {train_size!r}")
        self.source = source
        self.fold = int(fold)
        self.split = split
        self.shots = int(shots)
        self.episodes = int(episodes)
        self.seed = int(seed)
        self.box_support = bool(box_support)
        self.train_size = int(train_size)
        self.transform = transform
        self.support_damage = float(support_damage)
        self.epoch = 0
        self.classes: list[int] = list(source.classes(fold, split))
        wanted = set(self.classes)
        self.pairs: list[tuple[str, int]] = sorted(
            {(str(i), int(c)) for i, c in source.image_pairs(split) if int(c) in wanted},
            key=lambda p: (p[1], p[0]),
        )
        self.class_images: dict[int, list[str]] = {c: [] for c in self.classes}
        for image_id, c in self.pairs:
            self.class_images[c].append(image_id)
        self._check_counts()
        self._train_order = _rng(self.seed, _SPLIT_TAG[split], _ORDER).permutation(len(self.pairs))

    def _check_counts(self) -> None:
        if not self.pairs:
            raise ValueError(
                f"source {self.source.name!r} has no {self.split} pool for fold {self.fold} "
                f"({len(self.classes)} {self.split} class(es), no image of them in "
                f"image_pairs({self.split!r})); split={self.split!r} needs one"
                + ("; a test-only source (or num_folds=1) allows split='test' only"
                   if self.split == "train" else ""))
        short = [(c, len(ims)) for c, ims in self.class_images.items() if len(ims) < self.shots + 1]
        if short:
            names = self.source.class_names
            detail = ", ".join(
                f"class {c} ({names[c - 1] if c - 1 < len(names) else '?'}) has {n}"
                for c, n in short
            )
            raise ValueError(
                f"{self.source.name} fold {self.fold} {self.split} pool: {detail} image(s); "
                f"{self.shots}-shot episodes need at least shots + 1 = {self.shots + 1} per class"
            )

    def __len__(self) -> int:
        return self.episodes

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose supports/augmentations training episodes use (test
        episodes ignore it)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    # -- sampling ---------------------------------------------------------------------------
    def _key(self, index: int, stream: int, per_epoch: bool) -> tuple[int, ...]:
        tag = _SPLIT_TAG[self.split]
        if self.split == "train" and per_epoch:
            return (self.seed, tag, self.epoch, index, stream)
        return (self.seed, tag, index, stream)

    def spec(self, index: int) -> EpisodeSpec:
        """The class, query and supports of episode ``index`` (cheap, no pixels)."""
        if not 0 <= index < self.episodes:
            raise IndexError(f"episode index {index} out of range 0..{self.episodes - 1}")
        if self.split == "test":
            rng = _rng(*self._key(index, _QUERY, False))
            class_id = self.classes[int(rng.integers(len(self.classes)))]
            images = self.class_images[class_id]
            query = images[int(rng.integers(len(images)))]
        else:
            query, class_id = self.pairs[int(self._train_order[index % len(self.pairs)])]
            images = self.class_images[class_id]
        order = _rng(*self._key(index, _SUPPORT, True)).permutation(len(images))
        supports = [images[j] for j in order if images[j] != query][: self.shots]
        return EpisodeSpec(index, class_id, query, tuple(supports))

    # -- loading ----------------------------------------------------------------------------
    def _support_mask(self, image_id: str, class_id: int, rng: np.random.Generator) -> np.ndarray:
        semantic = self.source.load_mask(image_id)
        if not self.box_support:
            return target_mask(semantic, class_id)
        instances = self.source.load_instances(image_id, class_id)
        ids = np.unique(instances)
        ids = ids[ids > 0]
        if ids.size == 0:  # no instance map for this object: fall back to its class pixels
            instances = (semantic == class_id).astype(np.int32)
            ids = np.array([1]) if instances.any() else ids
        if ids.size == 0:
            raise ValueError(f"{self.source.name}: {image_id} has no pixel of class {class_id}")
        return box_mask(instances, int(ids[int(rng.integers(ids.size))]))

    def __getitem__(self, index: int) -> Item:
        index = int(index)
        spec = self.spec(index)
        c = spec.class_id
        q_image = self.source.load_image(spec.query_id)
        q_sem = self.source.load_mask(spec.query_id)
        q_masks = [target_mask(q_sem, c), all_objects_mask(q_sem)]
        box_rng = _rng(*self._key(index, _BOX, True))
        s_images = [self.source.load_image(s) for s in spec.support_ids]
        s_masks = [self._support_mask(s, c, box_rng) for s in spec.support_ids]
        damage: list[str] | None = None
        if self.support_damage:
            s_images, s_masks, damage = damage_supports(
                s_images, s_masks, self.support_damage, _rng(*self._key(index, _DAMAGE, True)))
        if self.split == "train":
            q_aug = _rng(*self._key(index, _AUG_QUERY, False))
            s_aug = _rng(*self._key(index, _AUG_SUPPORT, True))
            with single_torch_thread():
                q_img_t, q_masks_t = augment(q_image, q_masks, self.train_size, q_aug)
                augmented = [
                    augment(im, [m], self.train_size, s_aug) for im, m in zip(s_images, s_masks)
                ]
            q_img_t = image_to_tensor(q_img_t)
            s_imgs: Sequence[np.ndarray | torch.Tensor] = [image_to_tensor(a[0]) for a in augmented]
            s_masks_out: Sequence[np.ndarray | torch.Tensor] = [a[1][0] for a in augmented]
        else:  # original sizes; numpy keeps this path single-threaded and fast
            q_img_t = torch.from_numpy(normalise_image(q_image))
            q_masks_t = [torch.from_numpy(m) for m in q_masks]
            s_imgs = [normalise_image(im) for im in s_images]
            s_masks_out = s_masks
        item: Item = {
            "query_image": q_img_t,
            "query_mask": q_masks_t[0],
            "query_all_objects": q_masks_t[1],
            "support_images": _stack_if_same(s_imgs),
            "support_masks": _stack_if_same(s_masks_out),
            "class_id": c,
            "query_id": spec.query_id,
            "support_ids": list(spec.support_ids),
            "index": index,
        }
        if damage is not None:
            item["support_damage"] = damage
        return self.transform(item) if self.transform is not None else item


def _stack_if_same(
    arrays: Sequence[np.ndarray | torch.Tensor],
) -> torch.Tensor | list[torch.Tensor]:
    """One ``(k, ...)`` tensor when all shapes agree, else a list of k tensors."""
    tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in arrays]
    if all(t.shape == tensors[0].shape for t in tensors):
        if all(isinstance(a, np.ndarray) for a in arrays):
            return torch.from_numpy(np.stack(arrays))  # type: ignore[arg-type]
        return torch.stack(tensors)
    return tensors


# --- batching --------------------------------------------------------------------------------
def collate_episodes(items: Sequence[Item]) -> dict[str, Any]:
    """Batch episode dicts (use as a DataLoader ``collate_fn``).

    Tensors with one shape across the batch are stacked (a new leading batch dim).
    Size-varying values (test-time ``query_image``, ``query_mask``,
    ``query_all_objects``, ``support_images``, ``support_masks`` at original image
    size) stay a list with one entry per episode. Ints become an int64 tensor;
    strings and lists (``query_id``, ``support_ids``) become lists.
    """
    if not items:
        raise ValueError("collate_episodes needs at least one item")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor) and all(
            isinstance(v, torch.Tensor) and v.shape == first.shape for v in values
        ):
            batch[key] = torch.stack(values)
        elif all(isinstance(v, (bool, int, np.integer)) for v in values):
            batch[key] = torch.tensor([int(v) for v in values], dtype=torch.int64)
        else:
            batch[key] = list(values)
    return batch
