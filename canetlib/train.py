"""The CANet trainer: the paper's recipe, exact resume, DDP through torchrun.

Paper section 5.1 ("Implementation details") and section 4.2: SGD (lr 0.0025,
momentum 0.9, weight decay 5e-4), batches of episodes, mean pixel
cross-entropy over the bilinearly upsampled logits with 255 ignored, and the
IOM input of each training sample equal to *that sample's prediction from the
previous epoch*, replaced by the empty mask with probability ``pr = 0.7``.
The defaults live in :mod:`canetlib.configs`.

Design choices that make a run reproducible and resumable:

* **Data** are a function of ``(seed, epoch, index)``: the dataset renders
  episode ``index`` of ``epoch`` (``set_epoch``), and the order of indices in
  an epoch is a permutation seeded by ``(seed, epoch)``. Each global batch of
  ``batch_size`` indices is split evenly over the processes (disjoint shards).
* **Randomness in the model** (``Dropout2d``) is reseeded every step from
  ``(seed, step, rank)``; the mask-dropout coin of a sample from
  ``(seed, epoch, index)``.
* **History memory** (last epoch's foreground probability per episode index,
  at the feature-grid size) lives in the trainer, not in dataset workers, is
  all-gathered across processes and is saved in every checkpoint.
* **Checkpoints** ``DIR/last.pt`` hold the model, optimizer, step, RNG states
  (torch CPU/CUDA, numpy, python), the history memory and the config; they are
  written atomically and read with ``weights_only=True``. A run killed at any
  moment and resumed with ``--resume`` ends with the same tensors as an
  unbroken run on CPU. ``DIR/model.pt`` is the final model (fp16 payload of
  :func:`canetlib.checkpoint.model_payload` plus the ``train_config``).
* **No model selection on test episodes**: the final checkpoint is the
  result. Optional validation (``validate_every``) uses episodes of the
  *training* classes drawn from held-out training images (a seeded hash of the
  image id sends a fraction ``val_fraction`` of the training pool to
  validation; those images are then excluded from training). With
  ``val_by="classes"`` a seeded ``val_classes`` of the fold's training classes
  are held out instead: the model trains on the others and is validated on
  classes it never saw, which is what the benchmark measures, still without a
  test class or a test image.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from canetlib import checkpoint as ckpt_io
from canetlib.configs import VAL_BY, TrainConfig
from canetlib.data.imageio import check_writable
from canetlib.data.source import DelegatingSource, SegmentationSource
from canetlib.inputs import IGNORE_INDEX
from canetlib.model import CANet
from canetlib.runtime import amp_dtype, autocast, default_device, progress_enabled

#: files a run writes into its output folder (``--overwrite`` removes exactly these)
RUN_FILES = ("last.pt", "model.pt", "log.csv", "val.csv")
LOG_HEADER = ("step", "epoch", "loss", "lr", "seconds")


# --------------------------------------------------------------------------- seeding
def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python versions)."""
    data = struct.pack(f"<{len(parts)}q", *[int(p) for p in parts])
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def held_out(image_id: str, seed: int, fraction: float) -> bool:
    """Whether a training image goes to validation: seeded hash of its id < ``fraction``."""
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < fraction


def rng_state() -> dict[str, Any]:
    """torch CPU/CUDA, numpy and python RNG states as ``weights_only``-safe values."""
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached": float(np_state[4])},
        "python": {"version": int(py_state[0]),
                   "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """The caller's process group if one is running, else torchrun's
    ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world,
                    int(os.environ.get("LOCAL_RANK", "0")))


def _init_distributed(info: DistInfo, device: torch.device) -> bool:
    """Start the process group (nccl on CUDA, gloo on CPU); False without torchrun.

    A group the caller started (of any size, one process too) is used as it is.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True
    if info.world <= 1:
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def _needs_group(info: DistInfo) -> bool:
    """True when :func:`train` must start (and therefore end) the process group."""
    import torch.distributed as dist

    return info.world > 1 and not dist.is_initialized()


def _all_gather(t: Tensor, info: DistInfo) -> Tensor:
    """Concatenate equal-shaped tensors of every rank along dim 0 (rank order)."""
    import torch.distributed as dist

    if info.world <= 1:
        return t
    parts = [torch.empty_like(t) for _ in range(info.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


# --------------------------------------------------------------------------- history
def keep_history(indices: Sequence[int], pr: float, seed: int, epoch: int) -> Tensor:
    """Mask dropout (section 4.2): ``(B,)`` booleans, False (= empty mask) with
    probability ``pr``; each coin is seeded by ``(seed, epoch, index)``."""
    coins = [torch.rand(1, generator=torch.Generator().manual_seed(
        mix_seed(seed, epoch, idx, 7))).item() for idx in indices]
    return torch.tensor([c >= pr for c in coins], dtype=torch.bool)


class HistoryMemory:
    """Last epoch's prediction of every episode index (the IOM input, section 4.2).

    Stores the foreground probability ``(N, h, w)`` at the feature-grid size
    (float16) and whether an index has a prediction yet. :meth:`inputs` turns
    it into the 2-channel IOM input, replacing each sample's mask by the empty
    (all-zero) mask with probability ``pr``; the coin is seeded by
    ``(seed, epoch, index)`` so it does not depend on the process layout.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.fg: Tensor | None = None
        self.valid = torch.zeros(self.size, dtype=torch.bool)

    def inputs(self, indices: Sequence[int], pr: float, seed: int, epoch: int,
               device: torch.device) -> Tensor | None:
        """IOM history ``(B, 2, h, w)`` for a batch of episode indices.

        ``None`` (= the empty mask for every sample) before the first prediction.
        """
        if self.fg is None:
            return None
        out = torch.zeros(len(indices), 2, *self.fg.shape[-2:])
        keep = keep_history(indices, pr, seed, epoch)
        for row, idx in enumerate(indices):
            if not (bool(self.valid[idx]) and bool(keep[row])):
                continue
            fg = self.fg[idx].float()
            out[row, 0] = 1.0 - fg
            out[row, 1] = fg
        return out.to(device)

    def update(self, indices: Tensor, fg: Tensor) -> None:
        """Remember this epoch's foreground probabilities ``(B, h, w)``."""
        if self.fg is None:
            self.fg = torch.zeros(self.size, *fg.shape[-2:], dtype=torch.float16)
        idx = indices.long().cpu()
        self.fg[idx] = fg.detach().to("cpu", torch.float16)
        self.valid[idx] = True

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "fg": self.fg, "valid": self.valid.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"history memory holds {state['size']} episodes, "
                             f"this run has {self.size} per epoch")
        self.fg = state["fg"]
        self.valid = state["valid"].clone()


# --------------------------------------------------------------------------- data
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


def rank_batches(cfg: TrainConfig, epoch: int, info: DistInfo, episodes: int
                 ) -> list[list[tuple[int, int]]]:
    """This rank's share of every global batch of ``epoch`` (keys ``(epoch, index)``)."""
    order = epoch_order(cfg.seed, epoch, episodes)
    per_rank = cfg.batch_size // info.world
    out = []
    for start in range(0, episodes - cfg.batch_size + 1, cfg.batch_size):
        batch = order[start:start + cfg.batch_size]
        mine = batch[info.rank * per_rank:(info.rank + 1) * per_rank]
        out.append([(epoch, i) for i in mine])
    return out


def _source_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The training source's keyword arguments from the ``world_*`` fields (synthetic
    world only)."""
    kw: dict[str, Any] = {}
    if cfg.dataset == "synthetic":
        if cfg.world_images is not None:
            kw["train_images_per_class"] = cfg.world_images
        if cfg.world_held_glyphs:
            kw["held_glyphs"] = True
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


def _source(cfg: TrainConfig) -> SegmentationSource:
    from canetlib.data import make_source

    source = make_source(cfg.dataset, cfg.root, **_source_kwargs(cfg))
    return CachedSource(source) if cfg.cache_images else source


def build_train_dataset(cfg: TrainConfig) -> Any:
    """Training episodes of the fold's training classes (held-out images removed)."""
    from canetlib.data import make_dataset

    source = _source(cfg)
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
                        source=source)


def build_val_dataset(cfg: TrainConfig) -> Any:
    """Validation episodes, test-style: training classes on held-out training images,
    or (``val_by="classes"``) held-out training classes."""
    from canetlib.data import make_dataset

    source = HeldOutSource(_source(cfg), cfg.seed, cfg.val_fraction, "val", cfg.val_by,
                           cfg.val_classes, cfg.fold)
    return make_dataset(cfg.dataset, fold=cfg.fold, split="test", shots=cfg.shots,
                        episodes=cfg.val_episodes, seed=cfg.seed, source=source)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of training items (``canetlib.data.collate_episodes``)."""
    from canetlib.data import collate_episodes

    out = dict(collate_episodes(items))
    out["index"] = torch.tensor([int(it["index"]) for it in items], dtype=torch.long)
    return out


# --------------------------------------------------------------------------- model
def build_model(cfg: TrainConfig) -> CANet:
    """CANet from the config, with pretrained backbone / initial weights loaded.

    The head is initialised from ``torch.manual_seed(cfg.seed)`` (N(0, 0.01)
    as the reference), so every process and every rerun starts identically.
    """
    torch.manual_seed(cfg.seed)
    model = CANet(**cfg.model_kwargs())
    if cfg.head_init == "kaiming":
        kaiming_head(model)
    if cfg.backbone_checkpoint:
        from canetlib.pretrain import load_backbone

        load_backbone(model, cfg.backbone_checkpoint)
    if cfg.init_checkpoint:
        init_from(model, cfg.init_checkpoint.format(fold=cfg.fold))
    return model


def kaiming_head(model: CANet) -> None:
    """He-normal (fan-in, ReLU) weights and zero biases for every head convolution.

    The classifier keeps a small init (std 0.01) so the first predictions are
    near 50/50. The frozen backbone is untouched.
    """
    for name, module in model.named_modules():
        if name.startswith("backbone") or not isinstance(module, nn.Conv2d):
            continue
        if module is model.iom.classifier:
            nn.init.normal_(module.weight, 0.0, 0.01)
        else:
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_from(model: CANet, name_or_path: str) -> list[str]:
    """Copy every tensor of a model checkpoint whose name and shape match; return the rest.

    Used to start the 5-shot attention model from a 1-shot model: everything
    but the new attention branch is loaded.
    """
    state = ckpt_io.load(name_or_path)["model"]
    own = model.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
           for k, v in state.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise ValueError(f"init_checkpoint {name_or_path!r} does not fit this model: "
                         + "; ".join(bad[:3]))
    loaded = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    if not loaded:
        raise ValueError(f"init_checkpoint {name_or_path!r} shares no tensor with this model")
    own.update(loaded)
    model.load_state_dict(own)
    return sorted(set(own) - set(loaded))


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (paper), or AdamW (``optimizer="adamw"``)."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def pixel_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy over the non-ignored pixels, logits upsampled to the labels.

    Paper section 5.1: "the loss is the mean cross-entropy over all pixels";
    255 (object borders) is ignored; a batch with no labelled pixel gives 0.
    """
    up = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear",
                       align_corners=True)
    total = F.cross_entropy(up, target, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (target != IGNORE_INDEX).sum().clamp_min(1)
    return total / count


def poly_lr(cfg: TrainConfig, step: int, total: int) -> float:
    """``lr * (1 - step / total) ** poly_power`` (constant when ``poly_power == 0``)."""
    if cfg.poly_power == 0:
        return cfg.lr
    return cfg.lr * max(0.0, 1.0 - step / total) ** cfg.poly_power


# --------------------------------------------------------------------------- output folder
def prepare_out(out: Path, resume: bool, overwrite: bool,
                extra: Sequence[str] = ()) -> Path | None:
    """Check the output folder; return the checkpoint to resume from (or None).

    Refuses a folder holding another run unless ``resume`` or ``overwrite``;
    ``overwrite`` removes the run's files (:data:`RUN_FILES` and ``extra``) only.
    """
    if resume and overwrite:
        raise ValueError("choose one of --resume and --overwrite")
    present = [name for name in (*RUN_FILES, *extra) if (out / name).exists()]
    last = out / "last.pt"
    if resume:
        if last.is_file():
            return last
        if present:
            raise ValueError(f"{out} holds {present} but no last.pt to resume from; "
                             "use --overwrite to start again")
        return None
    if present and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(present)}); pass --resume to "
                         "continue it or --overwrite to replace it")
    for name in present:
        (out / name).unlink()
    return None


def check_max_steps(max_steps: int | None, done: int = 0, path: Path | None = None) -> None:
    """``max_steps`` must be >= 1 and, when resuming from ``path`` at step ``done``,
    not below ``done`` (a resumed run never goes back or overwrites a later checkpoint)."""
    if max_steps is None:
        return
    if max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    if max_steps < done:
        raise ValueError(f"--max-steps {max_steps} is below step {done}, where {path} already "
                         "is; nothing was trained or written. Give --max-steps above "
                         f"{done} (or leave it out) to continue the run")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step`` (written by a killed run after its last checkpoint)."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step] if rows else []
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(keep)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    """What :func:`train` returns: the model (eval mode) and where the run ended."""

    model: CANet
    step: int
    total_steps: int
    out: Path
    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)


def train(cfg: TrainConfig, out: str | os.PathLike[str], *, max_steps: int | None = None,
          resume: bool = False, overwrite: bool = False,
          device: str | torch.device | None = None, progress: bool = True,
          dataset: Any = None) -> TrainResult:
    """Train CANet with ``cfg``; write ``out/last.pt``, ``out/log.csv`` and ``out/model.pt``.

    Args:
        cfg: the run's configuration (:func:`canetlib.configs.get_config`).
        out: output folder.
        max_steps: stop at this global step (the schedule still spans
            ``epochs``), e.g. for smoke tests; ``None`` = all epochs.
        resume: continue from ``out/last.pt`` (exactly, on the same hardware).
        overwrite: replace a previous run in ``out``.
        device: default CUDA when available (``LOCAL_RANK``'s GPU under torchrun).
        progress: tqdm bar with loss and lr (rank 0 only).
        dataset: a training episode dataset to use instead of building one.

    Raises:
        ValueError: bad folder state, a checkpoint of another config or
            architecture, ``max_steps`` below 1 or below the step ``resume``
            starts from (nothing written), or a NaN/inf loss (the message names the step).
        OSError: ``out`` cannot be written (checked before any work).
    """
    check_max_steps(max_steps)
    info = dist_info()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device is None and info.world > 1 and torch.cuda.is_available():
        device = f"cuda:{info.local_rank}"
    dev = default_device(device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    owns_group = _needs_group(info)
    distributed = _init_distributed(info, dev)
    if cfg.batch_size % info.world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the "
                         f"{info.world} processes")
    out = Path(out)
    # rank 0 decides about the folder; the others follow its decision
    resume_from: Path | None = None
    if info.main:
        check_writable(out, folder=True)
        resume_from = prepare_out(out, resume, overwrite)
        out.mkdir(parents=True, exist_ok=True)
    if distributed:
        import torch.distributed as dist

        flag = [str(resume_from) if resume_from else ""]
        dist.broadcast_object_list(flag, src=0)
        resume_from = Path(flag[0]) if flag[0] else None

    state = ckpt_io.load(resume_from, map_location="cpu") if resume_from else None
    if state is not None:
        _check_resumable(state, cfg, resume_from)  # type: ignore[arg-type]
        check_max_steps(max_steps, int(state["step"]), resume_from)
    ds = dataset if dataset is not None else build_train_dataset(cfg)
    episodes = len(ds)
    spe = episodes // cfg.batch_size
    if spe < 1:
        raise ValueError(f"an epoch has {episodes} episodes, fewer than batch_size "
                         f"{cfg.batch_size}")
    total = cfg.epochs * spe
    end = total if max_steps is None else min(total, int(max_steps))

    # on resume every weight comes from the checkpoint, except a packaged backbone's
    # (not stored in it): that one must be loaded from its package again
    model = build_model(cfg) if state is None else CANet(**{
        **cfg.model_kwargs(), "pretrained": ckpt_io.packaged_backbone(cfg.backbone)})
    memory = HistoryMemory(episodes)
    step, seconds = 0, 0.0
    if state is not None:
        ckpt_io.load_state(model, state["model"], str(resume_from))
        memory.load_state_dict(state["history"])
        step, seconds = int(state["step"]), float(state.get("seconds", 0.0))
    model.to(dev).train()
    if dev.type == "cuda" and cfg.channels_last:
        model.use_channels_last()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = make_optimizer(cfg, params)
    use_amp = dev.type == "cuda" and cfg.amp is not False
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype(dev) == torch.float16)
    if state is not None:
        optim.load_state_dict(state["optimizer"])
        if "scaler" in state and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    net: nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        unused = cfg.fusion == "attention" and cfg.shots == 1
        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                  find_unused_parameters=unused)

    log_path, val_path = out / "log.csv", out / "val.csv"
    if info.main:
        _truncate_log(log_path, step)
        if not log_path.is_file():
            with log_path.open("w", newline="") as f:
                csv.writer(f).writerow(LOG_HEADER)
    wrapped = EpochEpisodes(ds)
    result = TrainResult(model, step, total, out)
    bar = _bar(info, progress, total=end, initial=step, desc=f"train {cfg.name}")
    last_saved = step if state is not None else -1
    try:
        # one loader for the rest of the run: persistent workers keep their caches
        first_epoch, pos = divmod(step, spe)
        last_epoch = (end - 1) // spe
        batches = [b for e in range(first_epoch, last_epoch + 1)
                   for b in rank_batches(cfg, e, info, episodes)][pos:][:max(0, end - step)]
        loader: Any = DataLoader(wrapped, batch_sampler=batches, collate_fn=collate,
                                 num_workers=cfg.num_workers) if batches else []
        tick = time.perf_counter()
        for batch in loader:
            epoch = step // spe
            lr = poly_lr(cfg, step, total)
            for group in optim.param_groups:
                group["lr"] = lr
            loss = _train_step(net, model, batch, memory, cfg, epoch, step, info, dev,
                               optim, scaler, use_amp)
            step += 1
            now = time.perf_counter()
            seconds += now - tick  # data loading included
            tick = now
            result.losses.append(loss)
            if info.main:
                with log_path.open("a", newline="") as f:
                    csv.writer(f).writerow([step, epoch, f"{loss:.6f}", f"{lr:.6g}",
                                            f"{seconds:.3f}"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", epoch=epoch)
            if step % cfg.save_every == 0 or step == end:
                _save(out, info, model, optim, scaler, memory, cfg, step, spe, seconds)
                last_saved = step
            done = step // spe
            if (cfg.validate_every and info.main and step % spe == 0
                    and done % cfg.validate_every == 0):
                metrics = validate(model, cfg, dev)
                model.train()
                result.validation.append({"epoch": done, **metrics})
                _append_val(val_path, step, done, metrics)
                tick = time.perf_counter()
    finally:
        if bar is not None:
            bar.close()
    if last_saved != step:
        _save(out, info, model, optim, scaler, memory, cfg, step, spe, seconds)
    if info.main:
        final = ckpt_io.model_payload(model, half=True)
        final["train_config"] = cfg.to_dict()  # e.g. the evaluator's input size
        ckpt_io.save_atomic(final, out / "model.pt")
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        if owns_group:
            dist.destroy_process_group()
    result.step = step
    model.eval()
    return result


def _bar(info: DistInfo, requested: bool, **kw: Any) -> Any:
    if not (info.main and progress_enabled(requested)):
        return None
    from tqdm.auto import tqdm

    return tqdm(**kw)


def _train_step(net: nn.Module, model: CANet, batch: dict[str, Any], memory: HistoryMemory,
                cfg: TrainConfig, epoch: int, step: int, info: DistInfo, dev: torch.device,
                optim: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                use_amp: bool) -> float:
    """One SGD step on this rank's share of a global batch; returns the global mean loss."""
    query = batch["query_image"].to(dev, non_blocking=True)
    target = batch["query_mask"].to(dev, non_blocking=True)
    supports = batch["support_images"].to(dev, non_blocking=True)
    masks = batch["support_masks"].to(dev, non_blocking=True)
    indices: Tensor = batch["index"]
    if cfg.iom_history == "own":
        history, own = None, keep_history(indices.tolist(), cfg.mask_dropout, cfg.seed, epoch)
    else:
        history = memory.inputs(indices.tolist(), cfg.mask_dropout, cfg.seed, epoch, dev)
        own = None
    torch.manual_seed(mix_seed(cfg.seed, step, info.rank, 3))  # Dropout2d masks of this step
    with autocast(dev, use_amp):
        out = net(query, supports, masks, iterations=0, history=history, check=step == 0,
                  own_history=own)
    logits = out.logits[-1]
    loss = pixel_loss(logits, target)
    value = loss.detach()
    if info.world > 1:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)
        value /= info.world
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"training loss is {v} at step {step + 1} (epoch {epoch}); lower the "
                         "learning rate (--set lr=...) or check the data")
    optim.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optim)
    scaler.update()
    fg = torch.softmax(logits.detach().float(), dim=1)[:, 1]
    memory.update(_all_gather(indices.to(dev), info).cpu(), _all_gather(fg, info).cpu())
    return v


def _save(out: Path, info: DistInfo, model: CANet, optim: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler, memory: HistoryMemory, cfg: TrainConfig, step: int,
          spe: int, seconds: float) -> None:
    if not info.main:
        return
    payload = ckpt_io.model_payload(model)
    payload.update({
        "kind": "train", "step": step, "epoch": step // spe, "seconds": seconds,
        "optimizer": optim.state_dict(), "rng": rng_state(), "history": memory.state_dict(),
        "train_config": cfg.to_dict(),
    })
    if scaler.is_enabled():
        payload["scaler"] = scaler.state_dict()
    ckpt_io.save_atomic(payload, out / "last.pt")


def _check_resumable(state: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """Refuse a checkpoint of another config (names the differing fields)."""
    if state.get("kind") != "train" or "train_config" not in state:
        raise ValueError(f"{path}: not a training checkpoint (no optimizer/step); cannot resume")
    try:
        saved = TrainConfig.from_dict(state["train_config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its training config is not readable ({err})") from err
    diffs = cfg.mismatch(saved)
    if diffs:
        raise ValueError(f"{path} was written by another configuration; cannot resume: "
                         + "; ".join(diffs))


# --------------------------------------------------------------------------- validation
def validate(model: CANet, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """mIoU/FB-IoU on the held-out part of the training pool (never test episodes)."""
    from canetlib.evaluate import evaluate

    res = evaluate(model, build_val_dataset(cfg), iterations=cfg.iterations, device=device,
                   progress=False)
    return {"miou": float(res["miou"]), "fbiou": float(res["fbiou"])}


def _append_val(path: Path, step: int, epoch: int, metrics: dict[str, float]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "epoch", *metrics])
        w.writerow([step, epoch, *[f"{v:.4f}" for v in metrics.values()]])


def iter_log(path: str | os.PathLike[str]) -> Iterator[dict[str, float]]:
    """Rows of a run's ``log.csv`` as dicts of numbers."""
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            yield {k: float(v) for k, v in row.items()}


__all__ = [
    "LOG_HEADER",
    "RUN_FILES",
    "CachedSource",
    "DistInfo",
    "EpochEpisodes",
    "HeldOutSource",
    "HistoryMemory",
    "TrainResult",
    "build_model",
    "build_train_dataset",
    "build_val_dataset",
    "check_max_steps",
    "dist_info",
    "epoch_order",
    "held_out",
    "init_from",
    "iter_log",
    "kaiming_head",
    "keep_history",
    "make_optimizer",
    "mix_seed",
    "pixel_loss",
    "poly_lr",
    "prepare_out",
    "rank_batches",
    "rng_state",
    "set_rng_state",
    "train",
    "validate",
]
