"""One description of a CANet: :class:`CANetConfig` (what to build, validated in one place).

Everything that builds a CANet goes through it: ``CANet(**options)`` and
:meth:`CANet.from_config`, the trainer (``TrainConfig.model_config()``: the flat
``--set`` fields of :class:`canetlib.training.configs.TrainConfig` are its fields) and
checkpoint loading (:meth:`CANetConfig.from_dict` reads a checkpoint's
``model_config``; :meth:`CANetConfig.to_dict` is what a checkpoint stores, plain
types only, so that ``torch.load(weights_only=True)`` reads it). A built model keeps
its own as ``model.config``.

Whether the backbone starts from ImageNet weights (``pretrained``) is not part of
it: that is how weights are initialised, not what the network is, and a
checkpoint brings its own weights.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canetlib.model.backbone import BACKBONES, BLOCKS
from canetlib.model.inputs import check_iterations
from canetlib.model.modules import ATTENTION_POOLS, PAIRINGS

#: k-shot fusions: the learned attention of section 4.3 and Table 5's baselines
FUSIONS: tuple[str | None, ...] = (None, "attention", "feature-avg", "mask-avg", "mask-or")
#: fusions that keep one IOM chain per support and fuse the predicted masks
MASK_FUSIONS = ("mask-avg", "mask-or")
#: the ``model_config`` keys every CANet checkpoint stores
REQUIRED_KEYS = ("backbone", "blocks", "fusion", "width", "iterations", "dropout",
                 "backbone_widths")


@dataclass(frozen=True)
class CANetConfig:
    """What a :class:`canetlib.CANet` is (defaults: the paper's 1-shot model).

    Attributes:
        backbone: ``"resnet50"`` (paper), ``"vgg16"`` (Table 3), ``"resnet-tiny"``
            (the CPU configuration of the embedded world) or ``"efficientnet-lite0"``.
        blocks: backbone blocks whose features are compared (Table 3);
            the paper's choice is block2 + block3.
        fusion: k-shot fusion. ``None`` is the paper's 1-shot model (no
            attention branch, exactly one support). ``"attention"`` adds the
            attention branch of section 4.3; ``"feature-avg"``, ``"mask-avg"``
            and ``"mask-or"`` are the non-learned fusions of Table 5.
        width: channels of the head (256 in the paper).
        iterations: IOM refinements after the initial prediction at inference
            (4 in the paper); iteration 0 is CANet-Init.
        dropout: ``Dropout2d`` probability after head convolutions (reference).
        backbone_widths: stage widths for ``"resnet-tiny"`` (``None``: its default).
        normalise: unit-length backbone features per block before the encoder
            (not in the paper; see :class:`canetlib.model.FeatureEncoder`).
        pairing: ``"concat"`` (paper) or ``"relational"``
            (see :class:`canetlib.model.DenseComparison`).
        attention_pool: ``"mean"`` (paper) or ``"similar"`` (the attention branch averages its
            score map where the query resembles the support; see
            :class:`canetlib.model.AttentionFusion`).

    Sequences are stored as tuples (an empty ``backbone_widths`` as ``None``).
    Construction validates: an impossible setting is a ``ValueError`` naming it.
    """

    backbone: str = "resnet50"
    blocks: tuple[str, ...] = ("block2", "block3")
    fusion: str | None = None
    width: int = 256
    iterations: int = 4
    dropout: float = 0.5
    backbone_widths: tuple[int, ...] | None = None
    normalise: bool = False
    pairing: str = "concat"
    attention_pool: str = "mean"

    def __post_init__(self) -> None:
        widths = self.backbone_widths
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "backbone_widths", tuple(widths) if widths else None)
        object.__setattr__(self, "normalise", bool(self.normalise))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` on an impossible setting (names it and the valid values)."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if not self.blocks:
            raise ValueError("at least one backbone block must feed the comparison")
        for name in self.blocks:
            if name not in BLOCKS:
                raise ValueError(f"unknown block {name!r}; choose from {BLOCKS}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not _integer(self.width) or self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width!r}")
        check_iterations(self.iterations)
        if not isinstance(self.dropout, numbers.Real) or not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {self.dropout!r}")
        widths = self.backbone_widths
        if self.backbone == "resnet-tiny" and widths is not None and (
                len(widths) != 4 or not all(_integer(w) and w >= 1 for w in widths)):
            raise ValueError(f"resnet-tiny needs 4 widths >= 1, got {widths}")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {self.pairing!r}")
        if self.attention_pool not in ATTENTION_POOLS:
            raise ValueError(f"attention_pool must be one of {ATTENTION_POOLS}, "
                             f"got {self.attention_pool!r}")

    def replace(self, **changes: Any) -> CANetConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`canetlib.CANet` (tuples kept)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's ``model_config``: plain types (tuples as lists)."""
        return plain_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model_config") -> CANetConfig:
        """Read a checkpoint's ``model_config`` (inverse of :meth:`to_dict`).

        ``normalise``, ``pairing`` and ``attention_pool`` may be absent and then take the
        paper's choice;
        a missing :data:`REQUIRED_KEYS` key, an unknown key or an impossible value is
        a ``ValueError`` that starts with ``source``.
        """
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"{source}: model_config lacks {', '.join(map(repr, missing))}; "
                             f"a CANet checkpoint needs {', '.join(REQUIRED_KEYS)}")
        unknown = sorted(set(data) - set(MODEL_FIELDS))
        if unknown:
            raise ValueError(f"{source}: model_config has unknown keys {unknown}; "
                             f"a CANet config has {', '.join(MODEL_FIELDS)}")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


#: the field names of :class:`CANetConfig` (``TrainConfig`` has each of them too)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(CANetConfig))
#: the paper's model (every default of :class:`CANetConfig`)
PAPER_MODEL = CANetConfig()

__all__ = ["FUSIONS", "MASK_FUSIONS", "MODEL_FIELDS", "PAPER_MODEL", "REQUIRED_KEYS",
           "CANetConfig", "plain_dict"]


def plain_dict(config: Any) -> dict[str, Any]:
    """A config dataclass's fields as plain types (tuples as lists), as checkpoints store them."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
