"""What CANet's stages hand on, and how their maps become masks.

:class:`EpisodeFeatures` is what ``compare`` gives ``refine``, :class:`CANetOutput`
what ``refine`` (and ``forward``) returns, :class:`Prediction` what
:meth:`CANet.predict` returns; :func:`resize_maps` and :func:`binary_prediction`
turn ``(B, 2, h, w)`` maps into maps of another size and into masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["CANetOutput", "EpisodeFeatures", "Prediction", "binary_prediction", "resize_maps"]


def resize_maps(maps: Tensor, size: Sequence[int] | None) -> Tensor:
    """Bilinear (``align_corners=True``) resize of ``(B, C, h, w)`` maps; ``None`` = as is."""
    if size is None or tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=True)


def binary_prediction(maps: Tensor, size: Sequence[int] | None = None) -> Tensor:
    """The mask ``(B, H, W)`` (long, 1 = object) of ``(B, 2, h, w)`` background/foreground
    logits or probabilities: foreground beats background, a tie is background (as the
    two-class argmax). With ``size``, resized bilinearly first: resizing is linear, so
    only the margin ``foreground - background`` is resized (in a plain layout: resizing
    channels_last maps is slow on CPU)."""
    margin = (maps[:, 1:2] - maps[:, 0:1]).float().contiguous()
    return (resize_maps(margin, size)[:, 0] > 0).long()


@dataclass
class EpisodeFeatures:
    """Comparison features of a batch of episodes, ready for IOM passes.

    ``features`` is ``(B * groups, C, h, w)``: one row per episode, or one per
    support when a mask-level fusion keeps the k chains apart (``groups = k``).
    ``attention`` holds the normalised weights ``(B, k)`` of the attention
    fusion (``None`` for the others).
    """

    features: Tensor
    groups: int = 1
    attention: Tensor | None = None


@dataclass
class CANetOutput:
    """Logits of every IOM iteration (index 0 = CANet-Init) and attention weights.

    Each entry of ``logits`` is ``(B, 2, h, w)`` (background, foreground) on
    the feature grid; for mask-level fusions they are log-probabilities.
    """

    logits: list[Tensor]
    attention: Tensor | None = None

    @property
    def final(self) -> Tensor:
        return self.logits[-1]

    def probabilities(self, size: Sequence[int] | None = None) -> list[Tensor]:
        """Foreground/background probabilities per iteration, optionally upsampled."""
        return [resize_maps(torch.softmax(lg.float(), dim=1), size) for lg in self.logits]


@dataclass
class Prediction:
    """Probabilities ``(B, 2, H, W)`` at the requested size for every iteration."""

    probs: list[Tensor]
    attention: Tensor | None = None
    masks: list[Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.masks = [binary_prediction(p) for p in self.probs]

    @property
    def final(self) -> Tensor:
        """Binary mask ``(B, H, W)`` of the last iteration."""
        return self.masks[-1]
