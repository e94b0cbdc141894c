"""Running one episode through a model exactly as the evaluator does, for the explorers.

Query and supports are brought to one model input size with
:func:`canetlib.evaluation.resize_episode` (test episodes keep their original
sizes and 5-shot supports of different sizes arrive as lists), the model runs
through the evaluator's inference path (:func:`canetlib.model.inference.episode_maps`),
and each mask is decided as the evaluator decides it: the maps upsampled to the query's
original size by :func:`canetlib.model.outputs.binary_prediction`, the IoU measured
there with 255 pixels ignored (:func:`canetlib.evaluation.metrics.episode_iou`). An
:class:`EpisodeRun` keeps everything an explorer shows about one episode, so the
backbone never re-runs when a control moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from canetlib.evaluation import resize_episode, resolve_input_size
from canetlib.evaluation.metrics import episode_iou
from canetlib.evaluation.sizing import model_input_size
from canetlib.model import CANet
from canetlib.model.inference import episode_maps
from canetlib.model.outputs import binary_prediction

__all__ = [
    "EpisodeRun",
    "InputSize",
    "Item",
    "iterations_of",
    "run_episode",
    "run_first",
    "widget_input_size",
]

#: an episode dict (:mod:`canetlib.data.episodes` format)
Item = dict[str, Any]
#: a model input size: an int (square), ``(H, W)``, or ``None`` for the query's own size
InputSize = int | Sequence[int] | None


@dataclass
class EpisodeRun:
    """Everything the explorers show about one episode, at the query's original size.

    ``probs[t]`` is the ``(2, H, W)`` background/foreground probability of IOM
    iteration ``t`` (0 = CANet-Init), ``masks[t]`` its ``(H, W)`` binary mask,
    ``ious[t]`` its foreground IoU in % (``None`` without a query mask),
    ``attention`` the ``(k,)`` attention weights (attention fusion only) and
    ``input_size`` the size the model saw.
    """

    probs: list[Tensor]
    masks: list[Tensor]
    ious: list[float] | None
    attention: Tensor | None
    input_size: tuple[int, int]

    @property
    def final(self) -> Tensor:
        """The last iteration's mask."""
        return self.masks[-1]


def _size_of(item: Item, input_size: InputSize) -> tuple[int, int]:
    """The model input size: as given, else the query's own size."""
    if input_size is None:
        h, w = item["query_image"].shape[-2:]
        return int(h), int(w)
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def widget_input_size(episodes: Any, input_size: InputSize, model: Any = None) -> InputSize:
    """``input_size``, else the evaluator's choice: the model's own size (its recorded side
    or training crop), else the default of a dataset with a known source."""
    if input_size is not None:
        return input_size
    if getattr(episodes, "source", None) is None:
        return model_input_size(model)
    return resolve_input_size(episodes, None, model)


@torch.inference_mode()
def run_episode(model: CANet, item: Item, iterations: int | None = None,
                input_size: InputSize = None, scales: Sequence[float] = (1.0,)) -> EpisodeRun:
    """Run ``model`` on one episode dict the way :func:`canetlib.evaluation.evaluate` does.

    Args:
        model: a :class:`CANet` on any device (its training flag is restored).
        item: an episode (:mod:`canetlib.data.episodes` format); supports may
            be a ``(k, 3, H, W)`` tensor or a list of k differently sized images.
        iterations: IOM refinements after CANet-Init (default: the model's).
        input_size: the model input size, an int or ``(H, W)``; ``None`` = the
            query's own size (supports are resized to it). Pass
            ``canetlib.evaluation.resolve_input_size(dataset, None, model)`` to
            feed it as the evaluator does.
        scales: query scales (multi-scale test), as in the evaluator.
    """
    iterations = model.iterations if iterations is None else int(iterations)
    size = _size_of(item, input_size)
    query, supports, masks = resize_episode(item["query_image"], item["support_images"],
                                            item["support_masks"], size)
    # logits (one scale) or probabilities at the input size, as the evaluator gets them
    out = episode_maps(model, query, supports, masks, iterations, scales, logits=True)
    out_size = tuple(int(s) for s in item["query_image"].shape[-2:])
    probs = [p[0].cpu() for p in out.probabilities(out_size)]
    pred_masks = [binary_prediction(m, out_size)[0].cpu() for m in out.maps]
    gt = item.get("query_mask")
    ious = [episode_iou(m, gt.cpu()) for m in pred_masks] if gt is not None else None
    weights = out.attention[0].float().cpu() if out.attention is not None else None
    return EpisodeRun(probs, pred_masks, ious, weights, size)


def iterations_of(model: CANet, item: Item, iterations: int = 4,
                  input_size: InputSize = None) -> list[Tensor]:
    """Probabilities ``(2, H, W)`` of each IOM iteration for one episode dict.

    The backbone and the comparison run once; only the IOM runs
    ``iterations + 1`` times. See :func:`run_episode` for ``input_size``.
    """
    return run_episode(model, item, iterations, input_size).probs


def run_first(model: CANet, episodes: Any, count: int | None = None,
              iterations: int | None = None, input_size: InputSize = None
              ) -> tuple[list[Item], list[EpisodeRun]]:
    """The first ``count`` episodes of a dataset or list (default: all) and one run of each.

    ``input_size`` defaults to the evaluator's choice (:func:`widget_input_size`: the
    model's own size, else the dataset's default), else the query's own size.
    """
    n = len(episodes) if count is None else min(count, len(episodes))
    size = widget_input_size(episodes, input_size, model)
    items = [episodes[i] for i in range(n)]
    return items, [run_episode(model, item, iterations, size) for item in items]
