"""Few-shot segmentation metrics as the field defines them.

* **mIoU**: for each test class, sum the foreground intersections and unions
  over all of that class's episodes, divide, then average over the classes
  that had episodes.
* **FB-IoU**: IoU of background and of foreground, each pooled over all
  episodes regardless of class, then averaged.
* **episode IoU** (:func:`episode_iou`): one episode's foreground IoU, as the
  evaluator's per-episode report, the widgets and the figures show it.

Pixels labelled 255 count in neither the prediction nor the truth. The
accumulators take masks of any size on any device; the evaluator feeds them
at the original image size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from canetlib.model.inputs import IGNORE_INDEX

if TYPE_CHECKING:
    import numpy as np


def intersection_union(pred: Tensor, target: Tensor,
                       ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """Per-image (intersection, union) of background (col 0) and foreground (col 1).

    Args:
        pred: ``(B, H, W)`` or ``(H, W)`` binary prediction (1 = foreground).
        target: same shape, values 0, 1 or ``ignore_index``.
    Returns:
        two ``(B, 2)`` int64 tensors.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape "
                         f"{tuple(target.shape)}")
    if pred.dim() == 2:
        pred, target = pred[None], target[None]
    return counts(pred == 1, target, ignore_index)


def counts(foreground: Tensor, target: Tensor,
           ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """(intersection, union) ``(..., 2)`` of many predictions in four sums.

    ``foreground``: boolean ``(..., H, W)`` predictions; ``target``: ``(..., H, W)``
    with 0, 1 or ``ignore_index``, broadcast against it (one target for all
    IOM iterations of an episode, say). With ``V`` valid pixels, ``P`` predicted
    and ``T`` true foreground pixels among them and ``I`` their overlap, the
    foreground's intersection and union are ``I`` and ``P + T - I``, the
    background's ``V - P - T + I`` and ``V - I``: the evaluator scores every
    iteration of a batch in one pass instead of a dozen small ops per episode.
    """
    if foreground.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"prediction size {tuple(foreground.shape[-2:])} differs from target "
                         f"size {tuple(target.shape[-2:])}")
    valid = target != ignore_index
    truth = target == 1
    p = (foreground & valid).flatten(-2).sum(-1)
    i = (foreground & truth).flatten(-2).sum(-1)
    t = truth.flatten(-2).sum(-1).expand_as(i)
    v = valid.flatten(-2).sum(-1).expand_as(i)
    inter = torch.stack([v - p - t + i, i], dim=-1)
    union = torch.stack([v - i, p + t - i], dim=-1)
    return inter, union


def episode_iou(pred: Tensor | np.ndarray, target: Tensor | np.ndarray,
                ignore_index: int = IGNORE_INDEX) -> float:
    """Foreground IoU (%) of one episode's binary prediction, ``ignore_index`` pixels ignored.

    ``pred`` and ``target`` are ``(H, W)`` or ``(1, H, W)`` tensors or arrays; an
    empty union (no object predicted, none present) counts as 100.
    """
    inter, union = intersection_union(torch.as_tensor(pred), torch.as_tensor(target),
                                      ignore_index)
    if inter.shape[0] != 1:
        raise ValueError(f"episode_iou takes one episode, got a batch of {inter.shape[0]}")
    u = int(union[0, 1])
    return 100.0 * int(inter[0, 1]) / u if u else 100.0


class FewShotMeter:
    """Accumulates pooled intersections and unions per class and overall.

    Args:
        classes: the class ids of the fold; each starts with no episode.
            Classes that never get an episode are left out of the mean and
            listed by :meth:`missing_classes`.
    """

    def __init__(self, classes: Iterable[int]) -> None:
        self.classes = list(classes)
        self._inter = {c: 0 for c in self.classes}
        self._union = {c: 0 for c in self.classes}
        self._count = {c: 0 for c in self.classes}
        self._fb_inter = [0, 0]
        self._fb_union = [0, 0]

    def update(self, pred: Tensor, target: Tensor, class_ids: Sequence[int] | Tensor) -> None:
        """Add a batch of predictions ``(B, H, W)`` with their episodes' class ids."""
        inter, union = intersection_union(pred, target)
        self.add_counts(class_ids, inter, union)

    def add_counts(self, class_ids: Sequence[int] | Tensor, inter: Tensor,
                   union: Tensor) -> None:
        """Add ``(B, 2)`` intersections and unions (:func:`counts`) of B episodes."""
        ids = class_ids.tolist() if torch.is_tensor(class_ids) else list(class_ids)
        if len(ids) != inter.shape[0]:
            raise ValueError(f"{inter.shape[0]} predictions but {len(ids)} class ids")
        inter_l, union_l = inter.cpu().tolist(), union.cpu().tolist()
        for c, (ib, if_), (ub, uf) in zip(ids, inter_l, union_l):
            if c not in self._inter:
                raise ValueError(f"class {c} is not one of this meter's classes {self.classes}")
            self._inter[c] += if_
            self._union[c] += uf
            self._count[c] += 1
            self._fb_inter[0] += ib
            self._fb_inter[1] += if_
            self._fb_union[0] += ub
            self._fb_union[1] += uf

    @property
    def episodes(self) -> int:
        return sum(self._count.values())

    def missing_classes(self) -> list[int]:
        """Classes without a single episode (excluded from :meth:`miou`)."""
        return [c for c in self.classes if self._count[c] == 0]

    def class_iou(self) -> dict[int, float]:
        """Pooled foreground IoU of each class that had episodes (0..1)."""
        out = {}
        for c in self.classes:
            if self._count[c]:
                u = self._union[c]
                out[c] = self._inter[c] / u if u else 1.0
        return out

    def miou(self) -> float:
        """Mean over classes of the pooled foreground IoU (0..1)."""
        ious = self.class_iou()
        if not ious:
            raise ValueError("no episode was added; mIoU is undefined")
        return sum(ious.values()) / len(ious)

    def fbiou(self) -> float:
        """Mean of pooled background IoU and pooled foreground IoU (0..1)."""
        if not self.episodes:
            raise ValueError("no episode was added; FB-IoU is undefined")
        vals = [i / u if u else 1.0 for i, u in zip(self._fb_inter, self._fb_union)]
        return sum(vals) / 2

    def summary(self) -> dict[str, object]:
        """mIoU, FB-IoU (both in %), per-class IoU (%), episode count."""
        return {
            "miou": 100 * self.miou(),
            "fbiou": 100 * self.fbiou(),
            "per_class_iou": {str(c): 100 * v for c, v in self.class_iou().items()},
            "episodes": self.episodes,
        }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    if not values:
        raise ValueError("mean_std of no values")
    t = torch.tensor(list(values), dtype=torch.float64)
    std = float(t.std(unbiased=True)) if len(values) > 1 else 0.0
    return float(t.mean()), std


# -- the support-free yardstick ---------------------------------------------------
def all_objects_prediction(item: Mapping[str, Any]) -> Tensor | None:
    """``(1, H, W)`` prediction that marks every object of the query, any class.

    ``item`` is an episode dict (:mod:`canetlib.data.episodes`); ``None`` when it
    carries no ``query_all_objects`` mask.
    """
    every = item.get("query_all_objects")
    return None if every is None else (torch.as_tensor(every) == 1).long()[None].cpu()


def all_objects_iou(item: Mapping[str, Any]) -> float | None:
    """One episode's foreground IoU (%) of marking every object of the query (``None``
    without ``query_all_objects``)."""
    pred = all_objects_prediction(item)
    return None if pred is None else episode_iou(pred, torch.as_tensor(item["query_mask"])[None])


class AllObjectsMeter(FewShotMeter):
    """A :class:`FewShotMeter` of the support-free baseline: every object of the
    query marked foreground. Episodes without ``query_all_objects`` are skipped."""

    def add(self, item: Mapping[str, Any]) -> bool:
        """Score one episode dict; ``False`` when it lacks ``query_all_objects``."""
        pred = all_objects_prediction(item)
        if pred is None:
            return False
        target = torch.as_tensor(item["query_mask"]).cpu()[None]
        self.update(pred, target, [int(item["class_id"])])
        return True

    def result(self) -> float | None:
        """mIoU (%) pooled per class as the evaluator does; ``None`` without episodes."""
        return 100 * self.miou() if self.episodes else None


def all_objects_miou(episodes: Iterable[Mapping[str, Any]],
                     classes: Iterable[int] | None = None) -> float | None:
    """mIoU (%) of marking every object of each query, the support-free baseline.

    ``episodes``: episode dicts or a dataset of them (an
    :class:`~canetlib.data.EpisodeDataset`, say); ``classes`` default to
    ``episodes.classes`` or the class ids seen. ``None`` if no episode carries
    ``query_all_objects``. :func:`canetlib.evaluation.evaluate` reports the same
    number as ``all_objects_miou``.
    """
    known = getattr(episodes, "classes", None) if classes is None else classes
    if hasattr(episodes, "__len__") and hasattr(episodes, "__getitem__"):
        data = episodes
        episodes = (data[i] for i in range(len(data)))  # type: ignore[index, arg-type]
    if known is None or callable(known):
        episodes = list(episodes)
        known = sorted({int(item["class_id"]) for item in episodes})
    meter = AllObjectsMeter(int(c) for c in known)
    for item in episodes:
        meter.add(item)
    return meter.result()
