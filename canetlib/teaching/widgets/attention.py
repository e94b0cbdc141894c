"""The k-shot attention explorer of chapter 5: each support's attention weight, per episode.

An attention-fusion model is run once on each episode up front; the slider
redraws :func:`canetlib.teaching.visual.plot_attention` (the supports titled with their
weights, the query with its truth and prediction, a bar chart of the weights)
and the caption lists the weights and the prediction's IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from canetlib.model import CANet
from canetlib.teaching import visual
from canetlib.teaching.widgets.explorer import (
    Explorer,
    episode_heading,
    has_ground_truth,
    slider,
    source_class_names,
)
from canetlib.teaching.widgets.key import (
    GROUND_TRUTH,
    IGNORED,
    PREDICTION,
    SUPPORT_MASK,
    colour_key,
)
from canetlib.teaching.widgets.runs import InputSize, Item, run_first
from canetlib.teaching.widgets.static import Control, State

__all__ = ["AttentionExplorer"]


class AttentionExplorer(Explorer):
    """Browse k-shot episodes and the attention weight of each support (section 4.3).

    Args:
        episodes: k-shot episode dicts.
        weights: the ``(k,)`` softmax-normalised weights of each episode (eq. 2).
        predictions: optional final ``(H, W)`` masks of the queries.
        ious: optional IoU (%) of each prediction, for the caption.
        class_names: names of class ids ``1..n`` for the caption.
    """

    static_name = "attention"

    def __init__(self, episodes: Sequence[Item], weights: Sequence[Tensor],
                 predictions: Sequence[Tensor] | None = None,
                 ious: Sequence[float] | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        _check_lengths(episodes, weights, predictions, ious)
        super().__init__()
        self.episodes = list(episodes)
        self.weights = [torch.as_tensor(wt).float().flatten() for wt in weights]
        self.predictions = list(predictions) if predictions is not None else None
        self.ious = list(ious) if ious is not None else None
        self.class_names = class_names
        self.slider = slider("episode", len(self.episodes))
        self.slider.observe(self._on_change, names="value")
        self.widget = self._layout([self.slider])
        has_gt = has_ground_truth(self.episodes)
        self.key = colour_key([SUPPORT_MASK, *([GROUND_TRUTH] if has_gt else []),
                               *([PREDICTION] if self.predictions is not None else []),
                               *([IGNORED] if has_gt else [])])
        self.shown = -1
        self._draw()

    @classmethod
    def from_model(cls, model: CANet, episodes: Any, count: int | None = None,
                   iterations: int | None = None, input_size: InputSize = None
                   ) -> AttentionExplorer:
        """Run an attention-fusion model once on each of the first ``count`` episodes.

        Supports of different sizes (test episodes at original size) are
        resized as the evaluator does; see :meth:`IterationExplorer.from_model`
        for ``input_size``.
        """
        if model.fusion != "attention":
            raise ValueError("AttentionExplorer needs a CANet built with fusion='attention'")
        items, runs = run_first(model, episodes, count, iterations, input_size)
        weights = []
        for run in runs:
            assert run.attention is not None
            weights.append(run.attention)
        finals = [r.ious[-1] if r.ious is not None else None for r in runs]
        ious = [v for v in finals if v is not None]
        return cls(items, weights, [r.final for r in runs],
                   ious if len(ious) == len(runs) else None, source_class_names(episodes))

    def static_controls(self) -> list[Control]:
        """One ``episode`` slider."""
        return [Control("episode", (len(self.episodes),), episodes=True)]

    def view(self, state: State) -> tuple[Any, str]:
        """Episode ``i``: supports titled with their weights; the caption lists the weights."""
        (i,) = state
        item = self.episodes[i]
        pred = self.predictions[i] if self.predictions is not None else None
        wts = self.weights[i]
        fig = visual.plot_attention(item["support_images"], item["support_masks"], wts,
                                    query=item["query_image"], prediction=pred,
                                    gt=item.get("query_mask"))
        caption = (episode_heading(i, item, self.class_names)
                   + f" &mdash; weights {', '.join(f'{float(v):.2f}' for v in wts)}")
        if self.ious is not None:
            caption += f" &mdash; IoU of the prediction {self.ious[i]:.1f}"
        return fig, caption

    def _draw(self) -> None:
        i = int(self.slider.value)
        self._show(*self.view((i,)))
        self.shown = i


def _check_lengths(episodes: Sequence[Item], weights: Sequence[Tensor],
                   predictions: Sequence[Tensor] | None, ious: Sequence[float] | None) -> None:
    """One weight vector (and prediction and IoU, when given) per episode, at least one."""
    if not episodes or len(episodes) != len(weights):
        raise ValueError(f"{len(episodes)} episodes but {len(weights)} weight vectors")
    for name, values in (("predictions", predictions), ("ious", ious)):
        if values is not None and len(values) != len(episodes):
            raise ValueError(f"{len(episodes)} episodes but {len(values)} {name}")
