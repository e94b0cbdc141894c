"""The episode loop of :func:`evaluate` (see :mod:`canetlib.evaluation` for what it does)."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from canetlib.evaluation.datasets import class_names, dataset_classes
from canetlib.evaluation.metrics import AllObjectsMeter, FewShotMeter, counts
from canetlib.evaluation.results import EvalResult
from canetlib.evaluation.sizing import Size, group_items, resolve_input_size, stack_items
from canetlib.evaluation.speed import StageTimes, inference_setup, resolve_precision
from canetlib.model import CANet
from canetlib.model.cache import feature_cache
from canetlib.model.inference import IterationMaps, iteration_maps
from canetlib.model.inputs import check_episode, check_iterations
from canetlib.model.outputs import binary_prediction
from canetlib.model.runtime import default_device
from canetlib.model.runtime import progress as _progress

Item = dict[str, Any]
#: ``(query_image (3, H, W), probabilities (1, 2, H, W)) -> probabilities``
Postprocess = Callable[[Tensor, Tensor], Tensor]


def _as_list(items: list[Item]) -> list[Item]:
    return items


def _loader(dataset: Dataset, batch_size: int, num_workers: int) -> Iterator[list[Item]]:
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          collate_fn=_as_list)


class _Tally:
    """One FewShotMeter per iteration plus per-class episode counts."""

    def __init__(self, classes: list[int], iterations: int, keep_episodes: bool) -> None:
        self.meters = [FewShotMeter(classes) for _ in range(iterations + 1)]
        #: the support-free "mark every object" baseline, on the same episodes
        self.all_objects = AllObjectsMeter(classes)
        self.counts = dict.fromkeys(classes, 0)
        self.episodes: list[dict[str, Any]] | None = [] if keep_episodes else None

    def add_group(self, items: list[Item], out: IterationMaps,
                  postprocess: Postprocess | None = None) -> None:
        """Score episodes predicted together: ``out.maps[t]`` is ``(B, 2, h, w)``.

        Every iteration of all episodes whose queries share a size is upsampled,
        thresholded and counted in one pass (:func:`canetlib.evaluation.metrics.counts`).
        ``postprocess(query_image, probabilities)`` refines each iteration's
        probabilities at the query's original size before the argmax (one
        episode at a time).
        """
        for item in items:
            cid = int(item["class_id"])
            if cid not in self.counts:
                raise ValueError(f"episode {item.get('index')} has class {cid}, which is not "
                                 f"one of the dataset's test classes {sorted(self.counts)}")
            self.counts[cid] += 1
            self.all_objects.add(item)
        ious: list[list[float]] = [[] for _ in items]
        if postprocess is not None:
            for j, item in enumerate(items):
                ious[j] = self._add_postprocessed(item, out.episode(j), postprocess)[0]
        else:
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for j, item in enumerate(items):
                by_shape.setdefault(tuple(item["query_mask"].shape), []).append(j)
            for shape, idx in by_shape.items():
                maps = torch.cat([m[idx] for m in out.maps])  # every iteration at once
                fg = (binary_prediction(maps, shape) == 1).view(len(out.maps), len(idx), *shape)
                target = torch.stack([items[j]["query_mask"] for j in idx]).to(fg.device)
                for j, iou in zip(idx, self._count([items[j] for j in idx], *counts(fg, target))):
                    ious[j] = iou
        if self.episodes is not None:
            for item, iou in zip(items, ious):
                self.episodes.append({"index": item.get("index"), "class_id": int(item["class_id"]),
                                      "query_id": item.get("query_id"),
                                      "support_ids": item.get("support_ids"),
                                      "iou_per_iteration": iou})

    def _add_postprocessed(self, item: Item, out: IterationMaps,
                           postprocess: Postprocess) -> list[list[float]]:
        target = item["query_mask"].to(out.maps[0].device)
        maps = [postprocess(item["query_image"].to(p.device), p)
                for p in out.probabilities(target.shape[-2:])]
        fg = torch.stack([binary_prediction(m, target.shape[-2:]) == 1 for m in maps])
        return self._count([item], *counts(fg, target[None]))

    def _count(self, items: list[Item], inter: Tensor, union: Tensor) -> list[list[float]]:
        """Add ``(T, b, 2)`` counts of ``b`` episodes at every iteration ``t``; returns each
        episode's foreground IoU (%) per iteration (an empty union counts as 100)."""
        ids = [int(item["class_id"]) for item in items]
        for meter, i, u in zip(self.meters, inter, union):
            meter.add_counts(ids, i, u)
        if self.episodes is None:
            return [[] for _ in items]
        fg_i, fg_u = inter[..., 1].T.cpu().tolist(), union[..., 1].T.cpu().tolist()
        return [[100.0 * a / b if b else 100.0 for a, b in zip(ai, bi)]
                for ai, bi in zip(fg_i, fg_u)]

    def summarise(self, names: dict[int, str], times: StageTimes,
                  settings: dict[str, Any]) -> EvalResult:
        meters = self.meters
        if not meters[-1].episodes:
            raise ValueError("the dataset has no episodes")
        final = meters[-1].class_iou()
        n = meters[-1].episodes
        seconds = times.total
        return EvalResult(
            miou=100 * meters[-1].miou(),
            fbiou=100 * meters[-1].fbiou(),
            miou_init=100 * meters[0].miou(),
            miou_per_iteration=[100 * m.miou() for m in meters],
            fbiou_per_iteration=[100 * m.fbiou() for m in meters],
            per_class_iou={names[c]: 100 * v for c, v in final.items()},
            all_objects_miou=self.all_objects.result(),
            per_class_iou_per_iteration={names[c]: [100 * m.class_iou()[c] for m in meters]
                                         for c in final},
            classes=[{"id": c, "name": names[c], "episodes": self.counts[c]} for c in names],
            missing_classes=[names[c] for c in meters[-1].missing_classes()],
            episodes=n,
            seconds=seconds,
            episodes_per_second=n / seconds if seconds > 0 else float("inf"),
            settings=settings,
            per_episode=self.episodes,
            timings=times.as_dict(),
        )


def _check_items(items: list[Item]) -> None:
    shots = {len(item["support_images"]) for item in items}
    if len(shots) > 1:
        raise ValueError(f"episodes of one batch have different numbers of shots {sorted(shots)}")


def maybe_cache(model: Any, enabled: bool) -> AbstractContextManager[Any]:
    """:func:`~canetlib.model.cache.feature_cache` of ``model`` when enabled and possible."""
    return feature_cache(model) if enabled and hasattr(model, "extract_cache") else nullcontext()


def evaluate(model: CANet, dataset: Dataset, *, iterations: int = 4,
             scales: Sequence[float] = (1.0,), batch_size: int = 8,
             input_size: int | Sequence[int] | str | None = None,
             device: str | torch.device | None = None, amp: bool | None = None,
             progress: bool = False, num_workers: int = 0,
             classes: Sequence[int] | None = None, per_episode: bool = False,
             postprocess: Postprocess | None = None, cache_features: bool = True,
             bf16: bool = False, channels_last: bool = True, fold_bn: bool = True
             ) -> EvalResult:
    """Evaluate ``model`` on every episode of ``dataset``.

    Args:
        model: a :class:`CANet` (moved to ``device``, evaluated in eval mode;
            its training flag is restored afterwards).
        dataset: test episodes (:func:`canetlib.data.make_dataset`) or any episode dicts.
        iterations: IOM refinements after CANet-Init (paper: 4).
        scales: query scales; ``MULTI_SCALE`` = the paper's (0.7, 1, 1.3).
        batch_size: episodes per forward pass.
        input_size: model input size; ``None``: the size the model was trained at
            (``model.input_size`` from :func:`canetlib.model.checkpoint.load_model`), else
            the source's default; see :func:`resolve_input_size`.
        device: default CUDA when available.
        amp: mixed precision on CUDA (default on); ignored on CPU.
        progress, num_workers: a progress bar; DataLoader workers.
        classes: test class ids (default: from the dataset).
        per_episode: also return every episode's IoU per iteration.
        postprocess: refines each iteration's ``(1, 2, H, W)`` probabilities at
            the original size from the query image, e.g. a
            :class:`canetlib.evaluation.crf.DenseCRF` (Table 4's "CANet-Init + DenseCRF").
        cache_features: each distinct image's frozen features computed once (exact up to
            float rounding, several times faster on a fixed test pool; :func:`maybe_cache`).
        bf16: bf16 autocast on a CPU with native bf16 instructions (opt-in: faster,
            scores move by about 0.1 point; :mod:`canetlib.evaluation.speed`).
        channels_last, fold_bn: channels_last layout; the frozen backbone's BatchNorm
            folded into its convolutions (on a copy). Both exact up to float rounding.

    Returns:
        an :class:`EvalResult`: ``miou`` / ``fbiou`` (final iteration, %), the same per
        iteration (index 0 = CANet-Init), per class, the ``all_objects_miou`` baseline,
        ``settings`` and ``timings`` (seconds in data, backbone, head, metrics).
    """
    scales = _checked_scales(iterations, batch_size, scales)
    _checked_loading(num_workers, classes)
    dev, size = default_device(device), resolve_input_size(dataset, input_size, model)
    class_ids = [int(c) for c in classes] if classes is not None else dataset_classes(dataset)
    tally = _Tally(class_ids, iterations, per_episode)
    precision, times = resolve_precision(dev, amp, bf16), StageTimes()
    start = time.perf_counter()
    with inference_setup(model, dev, precision, times, channels_last, fold_bn), \
            torch.inference_mode(), maybe_cache(model, cache_features):
        batches = _timed_batches(_loader(dataset, batch_size, num_workers), times)
        total = -(-len(dataset) // batch_size)  # type: ignore[arg-type]
        for items in _progress(batches, enabled=progress, total=total, desc="evaluate",
                               unit="batch"):
            _score_batch(model, items, tally, size, dev, iterations, scales, postprocess, times)
    times.total = time.perf_counter() - start
    settings = _settings(iterations, scales, batch_size, size, dev, precision, postprocess,
                         channels_last=channels_last, fold_bn=fold_bn)
    return tally.summarise(class_names(dataset, class_ids), times, settings)


def _timed_batches(batches: Iterator[list[Item]], times: StageTimes) -> Iterator[list[Item]]:
    """``batches``, with the time spent producing them added to ``times.data``."""
    while True:
        start = time.perf_counter()
        items = next(batches, None)
        times.data += time.perf_counter() - start
        if items is None:
            return
        yield items


def _checked_scales(iterations: int, batch_size: int, scales: Sequence[float]
                    ) -> tuple[float, ...]:
    """The scales as floats, after checking the arguments of :func:`evaluate`."""
    check_iterations(iterations)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 (episodes per forward pass), "
                         f"got {batch_size!r}")
    if not (isinstance(scales, Sequence) and scales and all(_positive(s) for s in scales)):
        raise ValueError(f"scales must be a non-empty sequence of finite numbers > 0 such as "
                         f"(1.0,) or MULTI_SCALE (0.7, 1.0, 1.3), got {scales!r}")
    return tuple(float(s) for s in scales)


def _positive(value: object) -> bool:
    """Whether ``value`` is a finite real number > 0 (a bool is not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        math.isfinite(value) and value > 0


def _checked_loading(num_workers: int, classes: Sequence[int] | None) -> None:
    """``num_workers`` >= 0 and, when given, a non-empty ``classes`` (arguments of
    :func:`evaluate`)."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0 (DataLoader workers; 0 loads "
                         f"in this process), got {num_workers!r}")
    if classes is not None and len(classes) == 0:
        raise ValueError("classes is empty; give the test class ids or leave it out (None: "
                         "the dataset's)")


def _score_batch(model: CANet, items: list[Item], tally: _Tally, size: Size | None,
                 dev: torch.device, iterations: int, scales: Sequence[float],
                 postprocess: Postprocess | None, times: StageTimes) -> None:
    """Predict every episode of a loader batch (in groups of one input size) and tally it."""
    _check_items(items)
    for group in group_items(items, size):
        start = time.perf_counter()
        query, supports, masks = stack_items(group, size, dev)
        check_episode(query, supports, masks)
        out = iteration_maps(model, query, supports, masks, iterations, scales, logits=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        scored = time.perf_counter()
        times.model += scored - start
        tally.add_group(group, out, postprocess)
        times.metrics += time.perf_counter() - scored


def _settings(iterations: int, scales: Sequence[float], batch_size: int,
              size: Size | None, dev: torch.device, precision: str,
              postprocess: Postprocess | None, **layout: bool) -> dict[str, Any]:
    """What :func:`evaluate` ran with (the result's ``settings``); ``layout``: its
    ``channels_last`` and ``fold_bn``."""
    settings: dict[str, Any] = {
        "iterations": iterations, "scales": list(scales), "batch_size": batch_size,
        "input_size": list(size) if size is not None else None, "device": str(dev),
        "amp": precision == "amp", "precision": precision, "threads": torch.get_num_threads()}
    if postprocess is not None:
        settings["postprocess"] = getattr(postprocess, "settings", lambda: repr(postprocess))()
    return {**settings, **layout}
