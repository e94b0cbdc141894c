"""Several seeds: :func:`evaluate` on each, mean and sample standard deviation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.data import Dataset

from canetlib.evaluation.loop import evaluate, maybe_cache
from canetlib.evaluation.metrics import mean_std
from canetlib.evaluation.results import EvalResult, SeedsResult
from canetlib.model import CANet

SEED_KEYS = ("miou", "fbiou", "miou_init", "all_objects_miou")
SEED_LIST_KEYS = ("miou_per_iteration", "fbiou_per_iteration")


def evaluate_seeds(model: CANet, seeds: Iterable[int], dataset_factory: Callable[[int], Dataset],
                   **kw: Any) -> SeedsResult:
    """Run :func:`evaluate` on ``dataset_factory(seed)`` for each seed; mean and sample std.

    Returns a :class:`SeedsResult` (reads like a dict): ``seeds``, ``runs`` (each
    seed's :class:`EvalResult`), the means under the usual keys (``miou``, ``fbiou``,
    ``miou_per_iteration``, ..., ``per_class_iou``), the sample standard deviations
    under ``*_std``, and ``episodes`` (the total).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate_seeds needs at least one seed")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct (a repeated seed draws the same episodes, "
                         f"so the spread would shrink), got {seeds}")
    with torch.inference_mode(), maybe_cache(model, kw.get("cache_features", True)):
        runs = [evaluate(model, dataset_factory(s), **kw) for s in seeds]  # one cache for all
    return aggregate(seeds, runs)


def aggregate(seeds: list[int], runs: list[EvalResult]) -> SeedsResult:
    """Means and sample standard deviations of ``runs`` (one per seed)."""
    stats: dict[str, Any] = {}
    for key in SEED_KEYS:
        values = [r[key] for r in runs]
        if any(v is None for v in values):
            stats[key] = stats[f"{key}_std"] = None
        else:
            stats[key], stats[f"{key}_std"] = mean_std(values)
    for key in SEED_LIST_KEYS:
        pairs = [mean_std(vals) for vals in zip(*(r[key] for r in runs))]
        stats[key] = [m for m, _ in pairs]
        stats[f"{key}_std"] = [s for _, s in pairs]
    names = [n for n in runs[0]["per_class_iou"] if all(n in r["per_class_iou"] for r in runs)]
    per_class = {n: mean_std([r["per_class_iou"][n] for r in runs]) for n in names}
    return SeedsResult(
        seeds=seeds, runs=runs, **stats,
        per_class_iou={n: m for n, (m, _) in per_class.items()},
        per_class_iou_std={n: s for n, (_, s) in per_class.items()},
        missing_classes=sorted({n for r in runs for n in r["missing_classes"]}),
        episodes=sum(r["episodes"] for r in runs),
        seconds=sum(r["seconds"] for r in runs),
        settings=runs[0]["settings"],
    )
