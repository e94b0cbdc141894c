"""Named training configurations and their command-line overrides (``--set key=value``).

The defaults of :class:`TrainConfig` are the paper's recipe for PASCAL-5i
(section 5.1 "Implementation details"): SGD with learning
rate 0.0025, momentum 0.9 and weight decay 5e-4, 4 episodes a batch (8 on
COCO), 200 epochs, pixel cross-entropy with 255 ignored, and the IOM fed last
epoch's prediction that is reset to the empty mask with probability
``pr = 0.7``. The reference code declared a poly learning-rate power but
never applied it; ``poly_power=0`` (constant rate) reproduces it and
``poly_power=0.9`` is the option.

Named configs (:data:`CONFIGS`):

* ``pascal-1shot`` / ``pascal-5shot`` and ``coco-1shot`` / ``coco-5shot``: the
  paper's ImageNet ResNet-50 model (the 5-shot ones with attention fusion,
  section 4.3, trained with 5 supports);
* ``synthetic-1shot`` / ``synthetic-5shot``: the offline miniature on the
  embedded glyph world, a narrow ResNet pretrained by ``synthetic-pretrain``
  (see :mod:`canetlib.training.pretrain`) and small enough for a laptop CPU;
* ``synthetic-pretrain``: the backbone pretraining on the embedded
  pretraining classes (the miniature of ImageNet), a :class:`PretrainConfig`.

Every field can be overridden: ``TrainConfig.override(["lr=0.001"])`` or, on
the command line, ``--set lr=0.001 --set backbone_widths=8,16,16,16`` or the
field's own flag, ``--lr 0.001 --backbone-widths 8,16,16,16``; tyro parses the
values by the fields' types and lists the flags, with the comments beside the
fields as their help, in ``train --help`` (:mod:`canetlib.training.settings`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from canetlib.model.config import MODEL_FIELDS, PAPER_MODEL, CANetConfig
from canetlib.training.settings import Settings

#: fields that may differ between a checkpoint and ``--resume`` (they do not
#: change the arithmetic of the run: where data lives, how often to save/log)
RUN_CONTROL_FIELDS = frozenset({
    "root", "save_every", "num_workers", "validate_every", "val_episodes", "name", "threads",
    "cache_images",
})


#: options canetlib does not have, each with the value that is its recipe: a stored
#: ``train_config`` may hold that value (it is dropped), never another (``from_dict``)
RETIRED_OPTIONS = {"iom_history": "memory", "wrong_supports": 0.0, "world_held_glyphs": False}

#: options added since the first stored runs, with the value those runs had: a config stored
#: without ``world_per_fold`` was trained on the world drawn for all folds (``from_dict``)
ADDED_OPTIONS = {"world_per_fold": False, "world_part_recolour": 0.0, "support_damage": 0.0,
                 "attention_pool": "mean"}

#: head initialisations (see ``TrainConfig.head_init``)
HEAD_INITS = ("reference", "kaiming")
#: ``"sgd"`` (paper: momentum, L2 weight decay) or ``"adamw"`` (decoupled decay)
OPTIMIZERS = ("sgd", "adamw")
#: what validation holds out of the training pool (see canetlib.training.episodes.HeldOutSource)
VAL_BY = ("images", "classes")
#: ``dataset`` values (canetlib.data.DATASET_NAMES); the last two read your folder / FSS-1000
TRAIN_DATASETS = ("pascal", "coco", "synthetic", "folder", "fss1000")


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Everything that defines a CANet training run (defaults: the paper's PASCAL-5i 1-shot).

    The model fields are those of :class:`canetlib.model.CANetConfig`, flat so that
    ``--set width=64`` works (:meth:`model_config` gathers and validates them). The comment
    beside each field is its ``train --help``. Validation holds out training images or
    training classes, never a test image or a test class.
    """

    name: str = "custom"  # the run's name
    # -- data
    dataset: str = "pascal"  # pascal, coco, synthetic (the embedded world), folder or fss1000
    root: str | None = None  # dataset folder (none: the default place)
    fold: int = 0  # its 5 (COCO: 20) classes are the test classes, never trained on
    shots: int = 1  # supports per training episode
    support_damage: float = 0.0  # chance a support is made small, truncated or occluded
    episodes: int | None = None  # episodes an epoch (none: one per (image, class) pair)
    train_size: int = 321  # side of the square training crop, pixels
    world_images: int | None = None  # synthetic: images per class (none: the default)
    world_per_fold: bool = True  # synthetic: no test class in any training image
    world_base_classes: int = 0  # synthetic: one-glyph base classes added to training
    world_part_recolour: float = 0.0  # synthetic: chance a colour region is repainted (0: off)
    # -- model: CANetConfig's fields (defaults: the paper's model), then how to initialise it
    backbone: str = PAPER_MODEL.backbone  # resnet50, vgg16, resnet-tiny, efficientnet-lite0
    #: resnet-tiny's stage widths (none: its default)
    backbone_widths: tuple[int, ...] | None = PAPER_MODEL.backbone_widths
    blocks: tuple[str, ...] = PAPER_MODEL.blocks  # backbone blocks compared (Table 3)
    fusion: str | None = PAPER_MODEL.fusion  # k shots: attention, feature-avg, mask-avg, mask-or
    width: int = PAPER_MODEL.width  # channels of the head
    dropout: float = PAPER_MODEL.dropout  # Dropout2d after the head's convolutions
    iterations: int = PAPER_MODEL.iterations  # IOM refinements at inference (0: CANet-Init)
    head_init: str = "reference"  # reference (N(0, 0.01)) or kaiming (He normal, zero biases)
    normalise: bool = PAPER_MODEL.normalise  # unit-length backbone features (not the paper)
    pairing: str = PAPER_MODEL.pairing  # dense comparison: concat (paper) or relational
    attention_pool: str = PAPER_MODEL.attention_pool  # attention scores: mean (paper) or similar
    pretrained: bool = True  # ImageNet weights for the backbone
    backbone_checkpoint: str | None = None  # backbone weights: a shipped name or a path
    init_checkpoint: str | None = None  # a model that initialises this one ({fold}: the fold)
    # -- optimisation
    optimizer: str = "sgd"  # sgd (paper) or adamw
    lr: float = 0.0025  # learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 (sgd) or decoupled (adamw) weight decay
    batch_size: int = 4  # episodes a step, over all processes
    epochs: int = 200  # epochs of the run (the lr schedule spans them all)
    poly_power: float = 0.0  # lr * (1 - step / total) ** poly_power; 0: constant
    mask_dropout: float = 0.7  # probability that the IOM is fed the empty mask (pr)
    seed: int = 0  # seed of episodes, head initialisation and dropout
    # -- runtime (CUDA only: amp None = on, channels_last)
    amp: bool | None = None  # CUDA mixed precision (none: on)
    channels_last: bool = True  # CUDA: channels-last memory format
    num_workers: int = 0  # data loader processes
    threads: int | None = None  # torch threads (none: torch's default)
    cache_images: bool = False  # keep every decoded image in memory
    save_every: int = 500  # write last.pt every N steps
    # -- optional validation on held-out images of the training classes
    validate_every: int = 0  # validate every N epochs (0: never)
    val_episodes: int = 300  # validation episodes
    val_fraction: float = 0.0  # val_by=images: fraction of training images held out
    val_by: str = "images"  # held out: images (seen classes) or classes (unseen ones)
    val_classes: int = 3  # val_by=classes: training classes held out

    RUN_CONTROL = RUN_CONTROL_FIELDS  # a class attribute (no annotation), not a field
    RETIRED = RETIRED_OPTIONS  # a class attribute too
    ADDED = ADDED_OPTIONS

    def validate(self) -> None:
        self.model_config()  # the model's settings, validated by CANetConfig
        if self.dataset not in TRAIN_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(TRAIN_DATASETS)}, "
                             f"got {self.dataset!r}")
        if self.dataset in ("folder", "fss1000") and self.root is None:
            raise ValueError(f"dataset={self.dataset} needs root (--root DIR): the folder "
                             + ("with images/, masks/ and split.json" if self.dataset == "folder"
                                else "with FSS-1000's class folders and splits/"))
        if self.shots < 1:
            raise ValueError(f"shots must be >= 1, got {self.shots}")
        if self.shots > 1 and self.fusion is None:
            raise ValueError(f"shots={self.shots} needs a k-shot fusion (e.g. fusion=attention)")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1 (or none), got {self.episodes}")
        for key in ("train_size", "batch_size", "epochs", "save_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("mask_dropout", "world_part_recolour", "support_damage"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.poly_power < 0:
            raise ValueError(f"poly_power must be >= 0, got {self.poly_power}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or none), got {self.threads}")
        if self.num_workers < 0 or self.validate_every < 0:
            raise ValueError("num_workers and validate_every must be >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_by not in VAL_BY:
            raise ValueError(f"val_by must be one of {VAL_BY}, got {self.val_by!r}")
        if self.val_by == "classes" and self.val_classes < 1:
            raise ValueError(f"val_classes must be >= 1, got {self.val_classes}")
        if self.val_by == "classes" and self.val_fraction > 0:
            raise ValueError("val_fraction holds out images (val_by=images); with "
                             "val_by=classes leave it at 0")
        if self.validate_every and self.val_by == "images" and self.val_fraction == 0.0:
            raise ValueError("validate_every needs held-out images: set val_fraction "
                             "(e.g. val_fraction=0.1) or val_by=classes; test episodes are "
                             "never used")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if self.backbone == "resnet-tiny" and self.pretrained:
            raise ValueError("resnet-tiny has no ImageNet weights: set pretrained=false and "
                             "backbone_checkpoint=synthetic-backbone (see canetlib.training.pretrain)")

    def model_config(self) -> CANetConfig:
        """The run's :class:`canetlib.model.CANetConfig` (from the model fields, validated);
        build the model with ``CANet.from_config(cfg.model_config(), cfg.pretrained)``."""
        return CANetConfig(**{name: getattr(self, name) for name in MODEL_FIELDS})


@dataclass(frozen=True)
class PretrainConfig(Settings):
    """Backbone pretraining on the embedded pretraining classes (ImageNet's miniature).

    The CANet paper starts from an ImageNet ResNet-50 (section 5.1). Offline
    there is no ImageNet, so :mod:`canetlib.training.pretrain` trains the
    ``resnet-tiny`` backbone with a temporary head on images of glyph classes
    that are disjoint from the 20 benchmark classes: per-pixel segmentation
    into the pretraining classes (plus background) and image-level
    multi-label classification. Only the backbone is kept. All three blocks
    are pretrained (the pixel head reads block2 + block3 + block4) so that
    the Table 3 rows (:mod:`canetlib.teaching.table3`) can compare any of them on
    one backbone; the shipped CANet models use block2 + block3 only.
    """

    name: str = "synthetic-pretrain"  # the run's name
    backbone_widths: tuple[int, ...] = (32, 64, 128, 256)  # resnet-tiny's stage widths
    blocks: tuple[str, ...] = ("block2", "block3", "block4")  # blocks the pixel head reads
    image_size: int = 128  # side of the square images, pixels
    images_per_class: int = 32  # images of each pretraining class
    mosaic: float = 0.5  # probability that an image tiles 2 x 2 half-size samples
    batch_size: int = 32  # images a step
    steps: int = 2200  # optimizer steps of the run
    lr: float = 0.05  # learning rate (SGD)
    warmup: int = 50  # steps of linear lr warmup
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # L2 weight decay
    poly_power: float = 0.9  # lr * (1 - step / total) ** poly_power after the warmup
    classification_weight: float = 0.5  # weight of the image-level classification loss
    seed: int = 0  # seed of the images, the samples and the initialisation
    save_every: int = 100  # write last.pt every N steps
    num_workers: int = 1  # data loader processes
    threads: int | None = 2  # torch threads (none: torch's default)
    amp: bool | None = None  # CUDA mixed precision (none: on)
    channels_last: bool = True  # CUDA: channels-last memory format

    RUN_CONTROL = RUN_CONTROL_FIELDS  # a class attribute (no annotation), not a field

    def validate(self) -> None:
        if len(self.backbone_widths) != 4:
            raise ValueError(f"backbone_widths needs 4 values, got {self.backbone_widths}")
        if not 0.0 <= self.mosaic <= 1.0:
            raise ValueError(f"mosaic must be in [0, 1], got {self.mosaic}")
        for key in ("image_size", "images_per_class", "batch_size", "steps", "save_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


# --------------------------------------------------------------------------- registry

_PAPER = TrainConfig()

#: the CPU miniature: image size, head width and schedule sized for a laptop CPU
#: (canetlib/model/weights/README.md)
_SYNTHETIC = TrainConfig(
    name="synthetic-1shot", dataset="synthetic", episodes=1600, train_size=128,
    world_per_fold=False,  # the shipped resnet-tiny models were trained on the leaky world
    backbone="resnet-tiny", backbone_widths=(32, 64, 128, 256), width=64, dropout=0.1,
    head_init="kaiming", pretrained=False, backbone_checkpoint="synthetic-backbone",
    optimizer="adamw", lr=1e-3, weight_decay=1e-4, batch_size=8, epochs=8, poly_power=0.9,
    save_every=100, threads=1, num_workers=1, cache_images=True)

#: the offline world on a real ImageNet backbone (EfficientNet-Lite0 from its pip
#: package), a training pool drawn per fold (no test class in any training image),
#: 200 one-glyph base classes beside the fold's 15 training classes, 800 images per
#: training class, unit-length features and the relational comparison (chosen on
#: held-out training classes with scripts/head_probe.py; data/results/imagenet-backbone)
_SYNTHETIC_IMAGENET = dataclasses.replace(
    _SYNTHETIC, name="synthetic-imagenet-1shot", episodes=12800, epochs=3, world_images=800,
    world_per_fold=True, world_base_classes=200, backbone="efficientnet-lite0",
    backbone_widths=None, pretrained=True, backbone_checkpoint=None, normalise=True,
    pairing="relational")

CONFIGS: dict[str, TrainConfig | PretrainConfig] = {
    "pascal-1shot": dataclasses.replace(_PAPER, name="pascal-1shot"),
    "pascal-5shot": dataclasses.replace(_PAPER, name="pascal-5shot", shots=5,
                                        fusion="attention"),
    "coco-1shot": dataclasses.replace(_PAPER, name="coco-1shot", dataset="coco",
                                      batch_size=8, episodes=20000, epochs=50),
    "coco-5shot": dataclasses.replace(_PAPER, name="coco-5shot", dataset="coco",
                                      batch_size=8, episodes=20000, epochs=50, shots=5,
                                      fusion="attention"),
    "synthetic-1shot": _SYNTHETIC,
    "synthetic-5shot": dataclasses.replace(
        _SYNTHETIC, name="synthetic-5shot", shots=5, fusion="attention",
        init_checkpoint="synthetic-1shot-fold{fold}", episodes=1200, epochs=2, batch_size=4,
        lr=5e-4),
    "synthetic-imagenet-1shot": _SYNTHETIC_IMAGENET,
    "synthetic-imagenet-5shot": dataclasses.replace(
        _SYNTHETIC_IMAGENET, name="synthetic-imagenet-5shot", shots=5, fusion="attention",
        init_checkpoint="synthetic-imagenet-1shot-fold{fold}", episodes=1200, epochs=2,
        batch_size=4, lr=5e-4),
    "synthetic-pretrain": PretrainConfig(),
}


def get_config(name: str, overrides: Iterable[str] = (), **changes: Any
               ) -> TrainConfig | PretrainConfig:
    """A named config with ``key=value`` overrides and keyword changes applied.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a bad override.
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; valid configs: {', '.join(CONFIGS)}")
    cfg = CONFIGS[name]
    if changes:
        cfg = cfg.replace(**changes)
    cfg = cfg.override(list(overrides))
    cfg.validate()
    return cfg


__all__ = [
    "CONFIGS",
    "RUN_CONTROL_FIELDS",
    "CANetConfig",
    "PretrainConfig",
    "TrainConfig",
    "get_config",
]
