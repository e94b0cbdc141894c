"""One inference path: an episode batch -> every IOM iteration's maps at the wanted size.

:meth:`CANet.predict`, the evaluator, the segmenter, the book's widgets and the
benchmark all run episodes through :func:`iteration_maps`. It calls only the
model's ``encode`` / ``extract`` / ``prototypes`` / ``compare`` / ``refine``
(:class:`EpisodeModel`), so the evaluator's feature cache (consulted by ``extract``)
and the prototype baseline (:class:`~canetlib.model.baseline.PrototypeMatcher`) go
through it unchanged. Box supports (section 4.4) arrive as masks; k-shot fusions
(section 4.3) happen inside ``compare`` and ``refine``. The map helpers
:func:`resize_maps` and :func:`binary_prediction` of :mod:`canetlib.model.outputs`
can be imported from here too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from canetlib.model.inputs import check_episode, check_scales
from canetlib.model.outputs import CANetOutput, EpisodeFeatures, resize_maps

__all__ = ["EpisodeModel", "IterationMaps", "episode_maps", "iteration_maps"]


class EpisodeModel(Protocol):
    """The staged interface of :class:`~canetlib.CANet` that inference uses."""

    training: bool

    def parameters(self) -> Iterator[nn.Parameter]: ...
    def eval(self) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def extract(self, images: Tensor) -> Tensor: ...
    def prototypes(self, support_feats: Tensor, support_masks: Tensor) -> Tensor: ...
    def compare(self, query_feats: Tensor, prototypes: Tensor) -> EpisodeFeatures: ...
    def refine(self, feats: EpisodeFeatures, iterations: int) -> CANetOutput: ...
    def encode(self, query: Tensor, supports: Tensor, support_masks: Tensor
               ) -> EpisodeFeatures: ...


@dataclass
class IterationMaps:
    """Per-iteration ``(B, 2, H, W)`` maps (index 0 = CANet-Init) and attention ``(B, k)``.

    ``logits`` tells whether ``maps`` hold logits (log-probabilities for the
    mask-level fusions) or background/foreground probabilities.
    """

    maps: list[Tensor]
    attention: Tensor | None = None
    logits: bool = False

    def episode(self, j: int) -> IterationMaps:
        """The maps of episode ``j`` of the batch (batch dimension kept)."""
        att = self.attention[j:j + 1] if self.attention is not None else None
        return IterationMaps([m[j:j + 1] for m in self.maps], att, self.logits)

    def probabilities(self, size: Sequence[int]) -> list[Tensor]:
        """Each map upsampled to ``size`` (logits before the softmax), as probabilities."""
        ups = [resize_maps(m.float(), size) for m in self.maps]
        return [torch.softmax(u, dim=1) for u in ups] if self.logits else ups


def iteration_maps(model: EpisodeModel, query: Tensor, supports: Tensor, masks: Tensor,
                   iterations: int, scales: Sequence[float] = (1.0,),
                   size: Sequence[int] | None = None, *, logits: bool = False) -> IterationMaps:
    """Every IOM iteration (section 4.2) of a batch, averaged over query scales.

    Args:
        query: ``(B, 3, H, W)``; supports ``(B, k, 3, Hs, Ws)``; masks ``(B, k, Hs, Ws)``.
        iterations: IOM refinements after CANet-Init.
        scales: query scales; several = the multi-scale test of section 5.1.3
            (supports pass the backbone once, the query once per scale, and the
            probabilities are averaged).
        size: output size; ``None`` = the feature grid for one scale, the
            query's size for several.
        logits: with one scale, return logits (resized as logits) instead of
            probabilities; several scales always give probabilities.
    """
    if tuple(scales) == (1.0,):
        out = model.refine(model.encode(query, supports, masks), iterations)
        if logits:
            return IterationMaps([resize_maps(lg.float(), size) for lg in out.logits],
                                 out.attention, True)
        return IterationMaps(out.probabilities(size), out.attention)
    size = tuple(size) if size is not None else tuple(query.shape[-2:])
    protos = model.prototypes(model.extract(supports.flatten(0, 1)), masks)
    total: list[Tensor] | None = None
    attention = None
    for s in scales:
        q = query if s == 1.0 else F.interpolate(query, scale_factor=s, mode="bilinear",
                                                 align_corners=True)
        out = model.refine(model.compare(model.extract(q), protos), iterations)
        probs = out.probabilities(size)
        total = probs if total is None else [a + p for a, p in zip(total, probs)]
        if s == 1.0 or attention is None:
            attention = out.attention
    assert total is not None
    return IterationMaps([p / len(scales) for p in total], attention)


def episode_maps(model: EpisodeModel, query: Tensor, supports: Tensor, masks: Tensor,
                 iterations: int, scales: Sequence[float] = (1.0,),
                 size: Sequence[int] | None = None, *, logits: bool = False) -> IterationMaps:
    """:func:`iteration_maps` of one unbatched episode, checked, on the model's device.

    ``query`` is ``(3, H, W)``, ``supports`` ``(k, 3, Hs, Ws)``, ``masks``
    ``(k, Hs, Ws)``; the model runs in eval mode (its training flag is restored).
    """
    dev = next(model.parameters()).device
    q, s, m = query[None].to(dev), supports[None].to(dev), masks[None].to(dev)
    check_episode(q, s, m)
    check_scales(tuple(scales), *q.shape[-2:])
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return iteration_maps(model, q, s, m, iterations, scales, size, logits=logits)
    finally:
        model.train(was_training)
