"""The training data of a run: seeded episodes, their order, validation held out.

Everything here keeps a run's data a pure function of ``(seed, epoch, index)``
(see :mod:`canetlib.training.engine`):

* :class:`EpochEpisodes` fetches episode ``index`` of ``epoch`` from a key
  ``(epoch, index)``, whatever the worker layout;
* :func:`epoch_order` is the seeded permutation an epoch visits, and
  :func:`rank_batches` / :func:`epoch_batches` cut it into global batches and
  give each process its disjoint share;
* :class:`HeldOutSource` holds a seeded part of the training pool out for
  validation (training images, or training classes), never a test image or a
  test class; :class:`CachedSource` keeps what it has read in memory;
* :func:`build_train_dataset` / :func:`build_val_dataset` build both from a
  :class:`canetlib.training.configs.TrainConfig`, and :func:`collate` batches the items.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from canetlib.data import FOLD_SOURCES, collate_episodes, make_dataset, make_source
from canetlib.data.source import DelegatingSource, SegmentationSource, TrainingClassesAsTest
from canetlib.evaluation.prototype import BASELINE_FIT_EPISODES, BASELINE_FIT_SEED
from canetlib.training.configs import VAL_BY, TrainConfig
from canetlib.training.engine.distributed import ONE_PROCESS, DistInfo
from canetlib.training.engine.seeding import mix_seed


# --------------------------------------------------------------------------- episodes and order
class EpochEpisodes(Dataset):
    """Wraps an episode dataset so that a key ``(epoch, index)`` fetches one episode.

    Keeping the epoch in the key (rather than in worker state) makes every item
    a pure function of ``(seed, epoch, index)``, whatever the worker layout.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        if getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        item = dict(self.dataset[index])
        item["index"] = index
        return item


def epoch_order(seed: int, epoch: int, episodes: int) -> list[int]:
    """The order in which an epoch visits episode indices (seeded permutation)."""
    g = torch.Generator().manual_seed(mix_seed(seed, epoch, 1))
    return torch.randperm(episodes, generator=g).tolist()


def epoch_batches(seed: int, epoch: int, episodes: int, batch_size: int,
                  info: DistInfo = ONE_PROCESS) -> list[list[tuple[int, int]]]:
    """This rank's share of every global batch of ``epoch`` (keys ``(epoch, index)``).

    The epoch's :func:`epoch_order` is cut into ``episodes // batch_size`` global
    batches (a last partial batch is dropped); rank ``r`` of ``w`` takes the
    ``r``-th of ``w`` equal slices of each.
    """
    order = epoch_order(seed, epoch, episodes)
    per_rank = batch_size // info.world
    out = []
    for start in range(0, episodes - batch_size + 1, batch_size):
        batch = order[start:start + batch_size]
        mine = batch[info.rank * per_rank:(info.rank + 1) * per_rank]
        out.append([(epoch, i) for i in mine])
    return out


def rank_batches(cfg: TrainConfig, epoch: int, info: DistInfo, episodes: int
                 ) -> list[list[tuple[int, int]]]:
    """This rank's share of every global batch of ``epoch`` (keys ``(epoch, index)``)."""
    return epoch_batches(cfg.seed, epoch, episodes, cfg.batch_size, info)


def run_batches(cfg: TrainConfig, info: DistInfo, episodes: int, step: int, end: int
                ) -> list[list[tuple[int, int]]]:
    """This rank's batches of global steps ``step + 1 .. end`` (epochs of ``episodes``)."""
    spe = episodes // cfg.batch_size
    first_epoch, pos = divmod(step, spe)
    last_epoch = (end - 1) // spe
    return [b for e in range(first_epoch, last_epoch + 1)
            for b in rank_batches(cfg, e, info, episodes)][pos:][:max(0, end - step)]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of training items (``canetlib.data.collate_episodes``) and their
    episode indices (``index``)."""
    out = dict(collate_episodes(items))
    out["index"] = torch.tensor([int(it["index"]) for it in items], dtype=torch.long)
    return out


# --------------------------------------------------------------------------- sources
def held_out(image_id: str, seed: int, fraction: float) -> bool:
    """Whether a training image goes to validation: seeded hash of its id < ``fraction``."""
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < fraction


def source_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The training source's keyword arguments: the ``world_*`` fields (synthetic world),
    the fold (a folder dataset, FSS-1000)."""
    kw: dict[str, Any] = {}
    if cfg.dataset in FOLD_SOURCES:  # built for the run's fold
        kw["fold"] = cfg.fold
    if cfg.dataset == "synthetic":
        if cfg.world_images is not None:
            kw["train_images_per_class"] = cfg.world_images
        if cfg.world_part_recolour:
            kw["part_recolour"] = cfg.world_part_recolour
        if cfg.world_per_fold:
            kw["fold"] = cfg.fold
            kw["base_classes"] = cfg.world_base_classes
        elif cfg.world_base_classes:
            raise ValueError("world_base_classes needs world_per_fold=true")
    return kw


class CachedSource(DelegatingSource):
    """Keeps every image and mask it has read in memory (``cache_images=True``).

    For the synthetic world this renders each scene once per process instead
    of once per visit (its own cache holds a few hundred scenes).
    """

    def __init__(self, inner: SegmentationSource) -> None:
        super().__init__(inner)
        self._cache: dict[tuple[str, str, int], np.ndarray] = {}

    def _get(self, key: tuple[str, str, int], load: Any) -> np.ndarray:
        arr = self._cache.get(key)
        if arr is None:
            arr = self._cache[key] = load()
        return arr.copy()

    def load_image(self, image_id: str) -> np.ndarray:
        return self._get(("image", image_id, 0), lambda: self.inner.load_image(image_id))

    def load_mask(self, image_id: str) -> np.ndarray:
        return self._get(("mask", image_id, 0), lambda: self.inner.load_mask(image_id))

    def load_instances(self, image_id: str, class_id: int) -> np.ndarray:
        return self._get(("inst", image_id, class_id),
                         lambda: self.inner.load_instances(image_id, class_id))


class HeldOutSource(DelegatingSource):
    """The training pool of a source with a seeded part of it held out for validation.

    ``by="images"``: a fraction ``fraction`` of the training images (seeded
    hash of the id, :func:`held_out`). ``part="train"`` keeps the other images
    (the training episodes); ``part="val"`` keeps the held-out ones and
    presents them as the ``"test"`` split of the fold's *training* classes.

    ``by="classes"``: ``classes`` of fold ``fold``'s benchmark training classes
    (a seeded choice, :meth:`held_classes`; never an extra base class, whose one
    drawing would make validation easier than the test). ``part="train"`` trains on the other
    training classes and only on images that show none of the held-out ones;
    ``part="val"`` presents the held-out classes as the ``"test"`` split over
    the images that show one of them, so validation measures classes *and*
    images the model never saw, as the benchmark does. (An image counts as
    showing a class when it is one of the source's ``image_pairs`` for it.)

    Either way validation episodes are sampled like test episodes (no
    augmentation, original size) and never touch a test image or a test class.
    """

    def __init__(self, inner: SegmentationSource, seed: int, fraction: float, part: str,
                 by: str = "images", classes: int = 0, fold: int = 0) -> None:
        if part not in ("train", "val"):
            raise ValueError(f"part must be 'train' or 'val', got {part!r}")
        if by not in VAL_BY:
            raise ValueError(f"by must be one of {VAL_BY}, got {by!r}")
        super().__init__(inner)
        self.seed, self.fraction, self.part = seed, fraction, part
        self.by, self.classes_held, self.fold = by, int(classes), int(fold)

    def held_classes(self, fold: int) -> list[int]:
        """The training classes held out for validation (``by="classes"``), sorted.

        A fixed seeded choice per fold and count, the same for every training
        seed, so that runs with different seeds are validated on the same classes.
        """
        pool = self.inner.benchmark_train_classes(fold)
        if not 0 < self.classes_held < len(pool):
            raise ValueError(f"val_classes must be in 1..{len(pool) - 1} (the fold has "
                             f"{len(pool)} training classes), got {self.classes_held}")
        return sorted(random.Random(mix_seed(0, fold, 1)).sample(pool, self.classes_held))

    def train_classes(self, fold: int) -> list[int]:
        pool = self.inner.train_classes(fold)
        if self.by == "classes":
            held = set(self.held_classes(fold))
            return [c for c in pool if c not in held]
        return pool

    def test_classes(self, fold: int) -> list[int]:
        if self.part == "train":
            return self.inner.test_classes(fold)
        return self.held_classes(fold) if self.by == "classes" else self.inner.train_classes(fold)

    def image_pairs(self, split: str) -> list[tuple[str, int]]:
        if self.by == "classes":  # an image showing a held-out class is validation's
            pairs = self.inner.image_pairs("train")
            held = set(self.held_classes(self.fold))
            shown = {i for i, c in pairs if c in held}
            return [(i, c) for i, c in pairs if (i in shown) == (self.part == "val")]
        want = self.part == "val"
        return [(i, c) for i, c in self.inner.image_pairs("train")
                if held_out(i, self.seed, self.fraction) == want]


def training_source(cfg: TrainConfig, source: SegmentationSource | None = None
                    ) -> SegmentationSource:
    """The run's image source: ``source``, else ``cfg.dataset``'s (:func:`source_kwargs`);
    cached in memory with ``cache_images``."""
    if source is None:
        source = make_source(cfg.dataset, cfg.root, **source_kwargs(cfg))
    return CachedSource(source) if cfg.cache_images else source


# --------------------------------------------------------------------------- datasets
def build_train_dataset(cfg: TrainConfig, source: SegmentationSource | None = None) -> Any:
    """Training episodes of the fold's training classes (held-out images removed), from
    ``source`` when given (any source with a training pool), else ``cfg.dataset``."""
    source = training_source(cfg, source)
    if cfg.val_fraction > 0 or cfg.val_by == "classes":
        source = HeldOutSource(source, cfg.seed, cfg.val_fraction, "train", cfg.val_by,
                               cfg.val_classes, cfg.fold)
    episodes = cfg.episodes
    if episodes is None:  # one episode per training pair, as the reference's epoch
        probe = make_dataset(cfg.dataset, fold=cfg.fold, split="train", shots=cfg.shots,
                             episodes=1, seed=cfg.seed, train_size=cfg.train_size,
                             source=source)
        episodes = len(probe.pairs)
    return make_dataset(cfg.dataset, fold=cfg.fold, split="train", shots=cfg.shots,
                        episodes=episodes, seed=cfg.seed, train_size=cfg.train_size,
                        source=source, support_damage=cfg.support_damage)


def validation_config(run: str | os.PathLike[str], **changes: Any) -> TrainConfig:
    """The config of training run folder ``run`` (its ``last.pt``) with ``changes``, for
    rebuilding its validation episodes; ValueError when the run kept no validation split."""
    path = Path(run) / "last.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["train_config"], source=str(path)).replace(**changes)
    if cfg.val_fraction == 0 and cfg.val_by == "images":
        raise ValueError(f"{run} was trained without a validation split (val_fraction=0, "
                         "val_by=images)")
    return cfg


def matcher_fit_dataset(cfg: TrainConfig) -> Any:
    """The evaluator's episodes for fitting the prototype matcher's threshold (the fold's
    training classes, ``cfg``'s world options) without ``cfg``'s held-out classes or images."""
    kw: dict[str, Any] = {"fold": cfg.fold} if cfg.dataset == "synthetic" else {}
    if cfg.world_part_recolour:
        kw["part_recolour"] = cfg.world_part_recolour
    source: Any = make_source(cfg.dataset, cfg.root, **kw)
    if cfg.val_fraction > 0 or cfg.val_by == "classes":
        source = HeldOutSource(source, cfg.seed, cfg.val_fraction, "train", cfg.val_by,
                               cfg.val_classes, cfg.fold)
    return make_dataset(cfg.dataset, fold=cfg.fold, split="test", shots=cfg.shots,
                        episodes=BASELINE_FIT_EPISODES, seed=BASELINE_FIT_SEED,
                        source=TrainingClassesAsTest(source))


def build_val_dataset(cfg: TrainConfig, source: SegmentationSource | None = None) -> Any:
    """Validation episodes, test-style: training classes on held-out training images,
    or (``val_by="classes"``) held-out training classes (of ``source`` when given)."""
    source = HeldOutSource(training_source(cfg, source), cfg.seed, cfg.val_fraction, "val", cfg.val_by,
                           cfg.val_classes, cfg.fold)
    return make_dataset(cfg.dataset, fold=cfg.fold, split="test", shots=cfg.shots,
                        episodes=cfg.val_episodes, seed=cfg.seed, source=source,
                        support_damage=cfg.support_damage)


__all__ = ["CachedSource", "EpochEpisodes", "HeldOutSource", "build_train_dataset",
           "build_val_dataset", "collate", "epoch_batches", "epoch_order", "held_out",
           "matcher_fit_dataset", "rank_batches", "run_batches", "source_kwargs",
           "training_source", "validation_config"]
