"""The training-free yardstick: a prototype matcher's threshold, fitted on training classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from canetlib.evaluation.metrics import intersection_union
from canetlib.evaluation.sizing import default_input_size, model_input_size, stack_items

#: episodes and seed of the training-class episodes the prototype threshold is fitted on
BASELINE_FIT_EPISODES = 300
BASELINE_FIT_SEED = 0

#: thresholds tried by :func:`fit_threshold`
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))


@torch.inference_mode()
def fit_threshold(matcher: Any, dataset: Any, *,
                  thresholds: Sequence[float] = THRESHOLDS, input_size: int | None = None,
                  batch_size: int = 8) -> dict[str, Any]:
    """Choose the threshold with the best class-pooled mIoU on ``dataset``.

    ``dataset`` must hold episodes of classes the matcher will *not* be
    tested on (the fold's training classes, see
    :class:`canetlib.data.source.TrainingClassesAsTest`). IoU is pooled per class at the
    original query size with 255 ignored, as the evaluator does; every
    threshold is scored on the same similarity maps. Sets ``matcher.threshold``
    and returns ``{"threshold", "miou", "curve": {threshold: mIoU}}``.
    """
    ts = torch.tensor([float(t) for t in thresholds])
    inter: dict[int, Tensor] = {}
    union: dict[int, Tensor] = {}
    n = len(dataset)
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        size = (input_size, input_size) if input_size else None
        query, supports, masks = stack_items(items, size, torch.device("cpu"))
        sim = matcher.encode(query, supports, masks).features
        for j, item in enumerate(items):
            target = item["query_mask"]
            s = F.interpolate(sim[j:j + 1], size=tuple(target.shape[-2:]), mode="bilinear",
                              align_corners=True)[0, 0]
            pred = s[None] > ts[:, None, None]
            i_, u_ = (x[:, 1].double() for x in
                      intersection_union(pred, target.expand(len(ts), -1, -1)))
            c = int(item["class_id"])
            inter[c] = inter.get(c, torch.zeros_like(i_)) + i_
            union[c] = union.get(c, torch.zeros_like(u_)) + u_
    per_class = torch.stack([inter[c] / union[c].clamp_min(1) for c in sorted(inter)])
    miou = per_class.mean(dim=0)
    best = int(torch.argmax(miou))
    matcher.threshold = round(float(ts[best]), 6)
    return {"threshold": matcher.threshold, "miou": 100 * float(miou[best]),
            "curve": {round(float(t), 6): 100 * float(m) for t, m in zip(ts, miou)}}


def fit_prototype_baseline(model: Any, dataset: str, *, root: str | None = None, fold: int = 0,
                           shots: int = 1, input_size: int | None = None,
                           episodes: int = BASELINE_FIT_EPISODES,
                           seed: int = BASELINE_FIT_SEED,
                           source_options: dict[str, Any] | None = None
                           ) -> tuple[Any, dict[str, Any]]:
    """A :class:`~canetlib.model.baseline.PrototypeMatcher` on ``model``'s frozen backbone,
    its threshold fitted on test-style episodes of the fold's *training* classes.

    Returns the matcher and the fit (threshold, its training-class mIoU, the curve).
    ``input_size`` defaults to the model's (``model.input_size``), else the dataset's;
    the matcher keeps it as ``input_size`` for :func:`evaluate`. For the embedded
    world the training pool is the one drawn for ``fold`` (no test class in any
    image), as the shipped models are trained on. ``source_options`` go to the source
    (e.g. ``{"part_recolour": 0.5}`` for that variant of the world).
    """
    from canetlib.data import make_dataset, make_source
    from canetlib.data.source import TrainingClassesAsTest
    from canetlib.model.baseline import PrototypeMatcher

    kw: dict[str, Any] = {"fold": fold} if dataset in ("synthetic", "folder", "fss1000") else {}
    kw.update(source_options or {})
    source = TrainingClassesAsTest(make_source(dataset, root, **kw))
    fit_set = make_dataset(dataset, fold=fold, split="test", shots=shots, episodes=episodes,
                           seed=seed, source=source)
    matcher = PrototypeMatcher.from_model(model)
    matcher.input_size = getattr(model, "input_size", None)
    own = model_input_size(model)
    side = input_size or (own[0] if own else default_input_size(dataset))
    fit = fit_threshold(matcher, fit_set, input_size=side)
    fit.update({"episodes": episodes, "seed": seed, "classes": "training classes of the fold"})
    return matcher, fit
