"""The episode loop of :func:`evaluate` (see :mod:`canetlib.evaluate` for what it does)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from canetlib.evaluation.datasets import class_names, dataset_classes
from canetlib.evaluation.results import EvalResult
from canetlib.evaluation.sizing import Size, group_items, resolve_input_size, stack_items
from canetlib.inputs import check_episode
from canetlib.metrics import AllObjectsMeter, FewShotMeter, episode_iou
from canetlib.model import CANet
from canetlib.model.cache import feature_cache
from canetlib.model.inference import IterationMaps, iteration_maps, resize_maps
from canetlib.runtime import autocast, default_device
from canetlib.runtime import progress as _progress

Item = dict[str, Any]
#: ``(query_image (3, H, W), probabilities (1, 2, H, W)) -> probabilities``
Postprocess = Callable[[Tensor, Tensor], Tensor]


def returns_logits(scales: Sequence[float]) -> bool:
    """Whether :func:`iteration_probabilities` gives logits (one scale) or probabilities."""
    return tuple(scales) == (1.0,)


def iteration_probabilities(model: CANet, query: Tensor, supports: Tensor, masks: Tensor,
                            iterations: int, scales: Sequence[float] = (1.0,)
                            ) -> tuple[list[Tensor], Tensor | None]:
    """Per-iteration maps for a batch: logits on the feature grid, or averaged probabilities.

    With one scale, each iteration's logits ``(B, 2, h, w)``; with several, its
    probabilities at the input size averaged over the scales. The second value
    is the attention weights ``(B, k)`` or ``None``. A thin wrapper of
    :func:`canetlib.model.inference.iteration_maps` with ``logits=True``.
    """
    out = iteration_maps(model, query, supports, masks, iterations, scales, logits=True)
    return out.maps, out.attention


def binary_prediction(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Upsample ``(B, 2, h, w)`` logits or probabilities to ``size`` and take the argmax.

    ``foreground > background`` is the two-class argmax (ties go to
    background, as ``argmax`` picks the first maximum) at a fraction of its
    cost on CPU.
    """
    up = resize_maps(maps, size)
    return (up[:, 1] > up[:, 0]).long()


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

    def add(self, item: Item, out: IterationMaps, postprocess: Postprocess | None = None) -> None:
        """``out``: one episode's per-iteration ``(1, 2, h, w)`` maps.

        ``postprocess(query_image, probabilities)`` refines each iteration's
        probabilities at the query's original size before the argmax.
        """
        cid = int(item["class_id"])
        if cid not in self.counts:
            raise ValueError(f"episode {item.get('index')} has class {cid}, which is not one of "
                             f"the dataset's test classes {sorted(self.counts)}")
        self.counts[cid] += 1
        self.all_objects.add(item)
        target = item["query_mask"].to(out.maps[0].device)
        maps = out.maps
        if postprocess is not None:
            maps = [postprocess(item["query_image"].to(p.device), p)
                    for p in out.probabilities(target.shape[-2:])]
        ious = []
        for meter, m in zip(self.meters, maps):
            pred = binary_prediction(m, target.shape[-2:])
            meter.update(pred, target[None], [cid])
            if self.episodes is not None:
                ious.append(episode_iou(pred, target[None]))
        if self.episodes is not None:
            self.episodes.append({"index": item.get("index"), "class_id": cid,
                                  "query_id": item.get("query_id"),
                                  "support_ids": item.get("support_ids"),
                                  "iou_per_iteration": ious})

    def summarise(self, names: dict[int, str], seconds: float,
                  settings: dict[str, Any]) -> EvalResult:
        meters = self.meters
        if not meters[-1].episodes:
            raise ValueError("the dataset has no episodes")
        final = meters[-1].class_iou()
        n = meters[-1].episodes
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
        )


def _check_items(items: list[Item]) -> None:
    shots = {len(item["support_images"]) for item in items}
    if len(shots) > 1:
        raise ValueError(f"episodes of one batch have different numbers of shots {sorted(shots)}")


def maybe_cache(model: Any, enabled: bool) -> AbstractContextManager[Any]:
    """:func:`~canetlib.model.cache.feature_cache` of ``model`` when enabled and possible."""
    return feature_cache(model) if enabled and hasattr(model, "extract") else nullcontext()


def evaluate(model: CANet, dataset: Dataset, *, iterations: int = 4,
             scales: Sequence[float] = (1.0,), batch_size: int = 8,
             input_size: int | Sequence[int] | str | None = None,
             device: str | torch.device | None = None, amp: bool | None = None,
             progress: bool = False, num_workers: int = 0,
             classes: Sequence[int] | None = None, per_episode: bool = False,
             postprocess: Postprocess | None = None, cache_features: bool = True
             ) -> EvalResult:
    """Evaluate ``model`` on every episode of ``dataset``.

    Args:
        model: a :class:`CANet` (moved to ``device``, evaluated in eval mode;
            its training flag is restored afterwards).
        dataset: test episodes of any source (see :func:`canetlib.data.make_dataset`,
            :func:`canetlib.data.episodes_from_source`) or any dataset of episode dicts.
        iterations: IOM refinements after CANet-Init (paper: 4).
        scales: query scales; ``MULTI_SCALE`` = the paper's (0.7, 1, 1.3).
        batch_size: episodes per forward pass.
        input_size: model input size; ``None``: the size the model was trained at
            (``model.input_size`` from :func:`canetlib.checkpoint.load_model`), else
            the source's default; see :func:`resolve_input_size`.
        device: default CUDA when available.
        amp: mixed precision on CUDA (default on; with channels_last);
            ignored on CPU.
        progress: show a progress bar.
        num_workers: DataLoader workers.
        classes: test class ids (default: from the dataset).
        per_episode: also return every episode's IoU per iteration.
        postprocess: refines each iteration's ``(1, 2, H, W)`` probabilities at
            the original size from the query image, e.g. a
            :class:`canetlib.crf.DenseCRF` (Table 4's "CANet-Init + DenseCRF").
        cache_features: compute each distinct image's frozen features once
            (:func:`canetlib.model.cache.feature_cache`; the same numbers up to
            float rounding, several times faster on a fixed test pool).

    Returns:
        an :class:`EvalResult` (reads like the dict ``to_dict()`` gives): ``miou`` /
        ``fbiou`` (final iteration, %), ``miou_per_iteration`` / ``fbiou_per_iteration``
        (index 0 = CANet-Init), ``per_class_iou``, ``all_objects_miou``, ``classes``,
        ``missing_classes``, ``episodes``, ``seconds``, ``episodes_per_second``,
        ``settings``.
    """
    scales = _checked_scales(iterations, batch_size, scales)
    dev = default_device(device)
    size = resolve_input_size(dataset, input_size, model)
    class_ids = [int(c) for c in classes] if classes is not None else dataset_classes(dataset)
    tally = _Tally(class_ids, iterations, per_episode)
    use_amp = dev.type == "cuda" and (amp is None or bool(amp))  # no AMP on CPU
    with _eval_mode(model, dev, use_amp):
        start = time.perf_counter()
        with torch.inference_mode(), autocast(dev, use_amp), maybe_cache(model, cache_features):
            batches = _loader(dataset, batch_size, num_workers)
            total = -(-len(dataset) // batch_size)  # type: ignore[arg-type]
            for items in _progress(batches, enabled=progress, total=total, desc="evaluate",
                                  unit="batch"):
                _score_batch(model, items, tally, size, dev, iterations, scales, postprocess)
    seconds = time.perf_counter() - start
    settings = _settings(iterations, scales, batch_size, size, dev, use_amp, postprocess)
    return tally.summarise(class_names(dataset, class_ids), seconds, settings)


def _checked_scales(iterations: int, batch_size: int, scales: Sequence[float]
                    ) -> tuple[float, ...]:
    """The scales as floats, after checking the arguments of :func:`evaluate`."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {scales}")
    return scales


@contextmanager
def _eval_mode(model: CANet, dev: torch.device, use_amp: bool) -> Iterator[None]:
    """``model`` on ``dev`` in eval mode (channels_last with AMP on CUDA) for the block;
    its training flag and memory format are restored afterwards, whatever happens."""
    was_training, was_cl = model.training, bool(getattr(model, "_channels_last", False))
    model.to(dev).eval()
    if dev.type == "cuda" and use_amp:
        model.use_channels_last(True)
    try:
        yield
    finally:
        if dev.type == "cuda" and use_amp and not was_cl:
            model.use_channels_last(False)
        model.train(was_training)


def _score_batch(model: CANet, items: list[Item], tally: _Tally, size: Size | None,
                 dev: torch.device, iterations: int, scales: Sequence[float],
                 postprocess: Postprocess | None) -> None:
    """Predict every episode of a loader batch (in groups of one input size) and tally it."""
    _check_items(items)
    for group in group_items(items, size):
        query, supports, masks = stack_items(group, size, dev)
        check_episode(query, supports, masks)
        out = iteration_maps(model, query, supports, masks, iterations, scales, logits=True)
        for j, item in enumerate(group):
            tally.add(item, out.episode(j), postprocess)


def _settings(iterations: int, scales: Sequence[float], batch_size: int,
              size: Size | None, dev: torch.device, use_amp: bool,
              postprocess: Postprocess | None) -> dict[str, Any]:
    """What :func:`evaluate` ran with (the result's ``settings``)."""
    settings: dict[str, Any] = {
        "iterations": iterations, "scales": list(scales), "batch_size": batch_size,
        "input_size": list(size) if size is not None else None, "device": str(dev),
        "amp": use_amp}
    if postprocess is not None:
        settings["postprocess"] = getattr(postprocess, "settings", lambda: repr(postprocess))()
    return settings
