"""The few-shot evaluator: every IOM iteration, original-size IoU, no test-set selection.

What it does for each batch of test episodes:

1. brings query and supports to a common model input size (see
   :func:`resolve_input_size`), support masks with nearest-neighbour;
2. runs the batch through :func:`canetlib.model.inference.iteration_maps`
   (the inference path of :meth:`CANet.predict`): the frozen backbone **once
   per image** (:meth:`CANet.encode`, query and supports in one call), then
   only the IOM for every refinement (:meth:`CANet.refine`), collecting the
   logits of every iteration (index 0 = CANet-Init);
3. upsamples each iteration's logits bilinearly to that episode's
   **original** query size, takes the argmax, and feeds one
   :class:`~canetlib.metrics.FewShotMeter` per iteration (255 ignored).

Multi-scale testing (paper: query at 0.7, 1 and 1.3, probabilities averaged)
extracts the supports once and the query once per scale.

Unlike the reference code, nothing is *selected* on the test episodes: every
iteration is reported and ``miou`` is always the last iteration's, never the
best one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from canetlib.inputs import check_episode
from canetlib.metrics import FewShotMeter, episode_iou, intersection_union, mean_std
from canetlib.model import MULTI_SCALE, CANet
from canetlib.model.cache import feature_cache
from canetlib.model.inference import IterationMaps, iteration_maps, resize_maps
from canetlib.runtime import autocast, default_device
from canetlib.runtime import progress as _progress

__all__ = [
    "MULTI_SCALE", "REFERENCE_INPUT_SIZE", "binary_prediction", "build_dataset", "class_names",
    "dataset_classes", "default_input_size", "evaluate", "evaluate_seeds",
    "iteration_probabilities", "resize_episode", "resolve_input_size",
]

#: the reference code fed 321 x 321 images to the network
REFERENCE_INPUT_SIZE = 321

Size = tuple[int, int]
Item = dict[str, Any]
#: ``(query_image (3, H, W), probabilities (1, 2, H, W)) -> probabilities``
Postprocess = Callable[[Tensor, Tensor], Tensor]


# -- datasets ---------------------------------------------------------------
def build_dataset(name: str, *, root: str | None = None, fold: int = 0, shots: int = 1,
                  episodes: int = 1000, seed: int = 0, box_support: bool = False,
                  **kwargs: Any) -> Dataset:
    """Test episodes from :func:`canetlib.data.make_dataset` (``split="test"``)."""
    from canetlib.data import make_dataset

    return make_dataset(name, root=root, fold=fold, split="test", shots=shots,
                        episodes=episodes, seed=seed, box_support=box_support, **kwargs)


def _source_name(dataset: Dataset) -> str | None:
    source = getattr(dataset, "source", None)
    name = getattr(source, "name", None) or getattr(dataset, "name", None)
    return str(name) if name is not None else None


def dataset_classes(dataset: Dataset) -> list[int]:
    """The fold's test class ids: ``dataset.classes``, else asked of ``dataset.source``.

    Falls back to reading every episode's ``class_id`` (slow) when the
    dataset says nothing about its classes.
    """
    classes = getattr(dataset, "classes", None)
    if classes is not None and not callable(classes):
        return [int(c) for c in classes]
    source = getattr(dataset, "source", None)
    fold = getattr(dataset, "fold", None)
    if source is not None and fold is not None:
        split = getattr(dataset, "split", "test")
        if hasattr(source, "classes"):
            return [int(c) for c in source.classes(fold, split)]
        return [int(c) for c in source.test_classes(fold)]
    return sorted({int(dataset[i]["class_id"]) for i in range(len(dataset))})  # type: ignore[arg-type]


def class_names(dataset: Dataset, classes: Iterable[int]) -> dict[int, str]:
    """Class id -> name from ``dataset.source.class_names`` (ids as strings otherwise)."""
    names = getattr(getattr(dataset, "source", None), "class_names", None) \
        or getattr(dataset, "class_names", None)
    out = {}
    for c in classes:
        out[c] = str(names[c - 1]) if names is not None and 0 < c <= len(names) else str(c)
    return out


def default_input_size(dataset_name: str | None) -> int:
    """Model input side for a dataset: its named training config's crop size, else 321.

    PASCAL-5i and COCO-20i train and test at 321 x 321 (reference code and
    paper); the synthetic world trains at the ``synthetic-1shot`` config's
    ``train_size`` (128), so its test episodes are fed at that size too.
    """
    try:
        from canetlib.configs import CONFIGS
    except ImportError:  # pragma: no cover - trainer not installed
        return REFERENCE_INPUT_SIZE
    cfg = CONFIGS.get(f"{dataset_name}-1shot")
    return int(getattr(cfg, "train_size", REFERENCE_INPUT_SIZE))


def resolve_input_size(dataset: Dataset,
                       input_size: int | Sequence[int] | str | None) -> Size | None:
    """The model input size ``(H, W)`` for ``dataset``; ``None`` = each image's own size.

    * an int (square) or ``(H, W)`` is used as given;
    * ``"native"`` keeps the original sizes (episodes of equal shapes are
      batched together; supports of one episode must then share a size);
    * ``None`` (default): :func:`default_input_size` of the dataset's source
      (321 for PASCAL-5i/COCO-20i as the reference, 128 for the synthetic
      world, 321 for anything unknown). Test images keep their original
      size; they are resized for the network only and IoU is measured at the
      original size.
    """
    if input_size == "native":
        return None
    if input_size is None:
        side = default_input_size(_source_name(dataset))
        return (side, side)
    if isinstance(input_size, str):
        raise TypeError(f"input_size must be an int, (H, W), 'native' or None, got {input_size!r}")
    size = (int(input_size), int(input_size)) if isinstance(input_size, int) \
        else (int(input_size[0]), int(input_size[1]))
    if min(size) < 8:
        raise ValueError(f"input_size must be at least 8 pixels, got {size}")
    return size


# -- one batch ----------------------------------------------------------------
def _resize_mask(mask: Tensor, size: Size) -> Tensor:
    """Nearest-neighbour resize of a 0/1/255 mask that never loses a small object."""
    if tuple(mask.shape[-2:]) == size:
        return mask
    out = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if bool((mask == 1).any()) and not bool((out == 1).any()):
        touched = F.adaptive_max_pool2d((mask == 1).float()[None, None], size)[0, 0] > 0
        out[touched] = 1
    return out


def _resize_image(image: Tensor, size: Size) -> Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0]


def resize_episode(query: Tensor, supports: Tensor | Sequence[Tensor],
                   masks: Tensor | Sequence[Tensor], size: Size) -> tuple[Tensor, Tensor, Tensor]:
    """Bring a query ``(3, H, W)`` and k supports/masks to ``size``.

    ``supports`` is ``(k, 3, Hs, Ws)`` or a list of k ``(3, H_j, W_j)``;
    ``masks`` likewise. Images are resized bilinearly with anti-aliasing (as
    the training episodes are), masks with nearest neighbour (0/1/255 kept);
    a support object so small that nearest neighbour would lose it keeps
    every output pixel it touches.
    Returns ``(3, *size)``, ``(k, 3, *size)`` and ``(k, *size)``.
    """
    if len(supports) != len(masks):
        raise ValueError(f"{len(supports)} support images but {len(masks)} support masks")
    return (_resize_image(query, size),
            torch.stack([_resize_image(s, size) for s in supports]),
            torch.stack([_resize_mask(m, size) for m in masks]))


def _shape_key(item: Item) -> tuple[tuple[int, ...], tuple[int, ...]]:
    supports = item["support_images"]
    if not torch.is_tensor(supports):
        raise ValueError(f"episode {item.get('index')}: its supports differ in size, so they "
                         "cannot be fed at their native size; give an input size")
    return tuple(item["query_image"].shape), tuple(supports.shape)


def _groups(items: list[Item], size: Size | None) -> list[list[Item]]:
    """Sub-batches that can be stacked: all items when resizing, else by shape."""
    if size is not None:
        return [items]
    groups: dict[Any, list[Item]] = {}
    for item in items:
        groups.setdefault(_shape_key(item), []).append(item)
    return list(groups.values())


def _stack(items: list[Item], size: Size | None,
           device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    qs, ss, ms = [], [], []
    for item in items:
        q, s, m = item["query_image"], item["support_images"], item["support_masks"]
        if size is not None:
            q, s, m = resize_episode(q, s, m, size)
        elif not torch.is_tensor(s):
            raise ValueError(f"episode {item.get('index')}: supports differ in size")
        qs.append(q)
        ss.append(s)
        ms.append(m)
    return (torch.stack(qs).to(device, non_blocking=True),
            torch.stack(ss).to(device, non_blocking=True),
            torch.stack(ms).to(device, non_blocking=True))


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


# -- the loop -----------------------------------------------------------------
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
        self.all_objects = FewShotMeter(classes)
        self.counts = dict.fromkeys(classes, 0)
        self.episodes: list[dict[str, Any]] | None = [] if keep_episodes else None

    def add(self, item: Item, out: IterationMaps, postprocess: Postprocess | None = None) -> None:
        """``out``: one episode's per-iteration ``(1, 2, h, w)`` maps.

        ``postprocess(query_image, probabilities)`` refines each iteration's
        probabilities at the query's original size before the argmax.
        """
        target = item["query_mask"]
        cid = int(item["class_id"])
        if cid not in self.counts:
            raise ValueError(f"episode {item.get('index')} has class {cid}, which is not one of "
                             f"the dataset's test classes {sorted(self.counts)}")
        self.counts[cid] += 1
        if "query_all_objects" in item:
            every = (item["query_all_objects"] == 1).long()[None]
            self.all_objects.update(every, target[None].cpu(), [cid])
        target = target.to(out.maps[0].device)
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


def _check_items(items: list[Item]) -> None:
    shots = {len(item["support_images"]) for item in items}
    if len(shots) > 1:
        raise ValueError(f"episodes of one batch have different numbers of shots {sorted(shots)}")


def evaluate(model: CANet, dataset: Dataset, *, iterations: int = 4,
             scales: Sequence[float] = (1.0,), batch_size: int = 8,
             input_size: int | Sequence[int] | str | None = None,
             device: str | torch.device | None = None, amp: bool | None = None,
             progress: bool = False, num_workers: int = 0,
             classes: Sequence[int] | None = None, per_episode: bool = False,
             postprocess: Postprocess | None = None, cache_features: bool = True
             ) -> dict[str, Any]:
    """Evaluate ``model`` on every episode of ``dataset``.

    Args:
        model: a :class:`CANet` (moved to ``device``, evaluated in eval mode;
            its training flag is restored afterwards).
        dataset: test episodes (see :func:`canetlib.data.make_dataset`).
        iterations: IOM refinements after CANet-Init (paper: 4).
        scales: query scales; ``MULTI_SCALE`` = the paper's (0.7, 1, 1.3).
        batch_size: episodes per forward pass.
        input_size: model input size, see :func:`resolve_input_size`.
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
        ``miou``/``fbiou`` (final iteration, %), ``miou_per_iteration`` /
        ``fbiou_per_iteration`` (index 0 = CANet-Init), ``per_class_iou``
        (name -> % at the final iteration), ``classes`` (id, name, episodes),
        ``missing_classes``, ``episodes``, ``seconds``, ``episodes_per_second``
        and ``settings``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {scales}")
    dev = default_device(device)
    size = resolve_input_size(dataset, input_size)
    class_ids = [int(c) for c in classes] if classes is not None else dataset_classes(dataset)
    tally = _Tally(class_ids, iterations, per_episode)
    use_amp = dev.type == "cuda" and (amp is None or bool(amp))  # no AMP on CPU
    was_training, was_cl = model.training, bool(getattr(model, "_channels_last", False))
    model.to(dev).eval()
    if dev.type == "cuda" and use_amp:
        model.use_channels_last(True)
    start = time.perf_counter()
    try:
        with torch.inference_mode(), autocast(dev, use_amp), _maybe_cache(model, cache_features):
            batches = _loader(dataset, batch_size, num_workers)
            total = -(-len(dataset) // batch_size)  # type: ignore[arg-type]
            for items in _progress(batches, enabled=progress, total=total, desc="evaluate",
                                  unit="batch"):
                _check_items(items)
                for group in _groups(items, size):
                    query, supports, masks = _stack(group, size, dev)
                    check_episode(query, supports, masks)
                    out = iteration_maps(model, query, supports, masks, iterations, scales,
                                         logits=True)
                    for j, item in enumerate(group):
                        tally.add(item, out.episode(j), postprocess)
    finally:
        if dev.type == "cuda" and use_amp and not was_cl:
            model.use_channels_last(False)
        model.train(was_training)
    seconds = time.perf_counter() - start
    settings = {"iterations": iterations, "scales": list(scales), "batch_size": batch_size,
                "input_size": list(size) if size is not None else None, "device": str(dev),
                "amp": use_amp}
    if postprocess is not None:
        settings["postprocess"] = getattr(postprocess, "settings", lambda: repr(postprocess))()
    return _summarise(tally, class_names(dataset, class_ids), seconds, settings)


def _maybe_cache(model: Any, enabled: bool) -> AbstractContextManager[Any]:
    return feature_cache(model) if enabled and hasattr(model, "extract") else nullcontext()


def _summarise(tally: _Tally, names: dict[int, str], seconds: float,
               settings: dict[str, Any]) -> dict[str, Any]:
    meters = tally.meters
    if not meters[-1].episodes:
        raise ValueError("the dataset has no episodes")
    final = meters[-1].class_iou()
    n = meters[-1].episodes
    result: dict[str, Any] = {
        "miou": 100 * meters[-1].miou(),
        "fbiou": 100 * meters[-1].fbiou(),
        "miou_init": 100 * meters[0].miou(),
        "miou_per_iteration": [100 * m.miou() for m in meters],
        "fbiou_per_iteration": [100 * m.fbiou() for m in meters],
        "per_class_iou": {names[c]: 100 * v for c, v in final.items()},
        # the support-free baseline: every object of the query marked foreground
        "all_objects_miou": 100 * tally.all_objects.miou() if tally.all_objects.episodes
        else None,
        "per_class_iou_per_iteration": {names[c]: [100 * m.class_iou()[c] for m in meters]
                                        for c in final},
        "classes": [{"id": c, "name": names[c], "episodes": tally.counts[c]} for c in names],
        "missing_classes": [names[c] for c in meters[-1].missing_classes()],
        "episodes": n,
        "seconds": seconds,
        "episodes_per_second": n / seconds if seconds > 0 else float("inf"),
        "settings": settings,
    }
    if tally.episodes is not None:
        result["per_episode"] = tally.episodes
    return result


# -- the training-free yardstick -------------------------------------------------
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
    :func:`canetlib.data.train_class_episodes`). IoU is pooled per class at the
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
        query, supports, masks = _stack(items, size, torch.device("cpu"))
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
    matcher.config["threshold"] = matcher.threshold
    return {"threshold": matcher.threshold, "miou": 100 * float(miou[best]),
            "curve": {round(float(t), 6): 100 * float(m) for t, m in zip(ts, miou)}}


def fit_prototype_baseline(model: Any, dataset: str, *, root: str | None = None, fold: int = 0,
                           shots: int = 1, input_size: int | None = None,
                           episodes: int = BASELINE_FIT_EPISODES,
                           seed: int = BASELINE_FIT_SEED) -> tuple[Any, dict[str, Any]]:
    """A :class:`~canetlib.model.baseline.PrototypeMatcher` on ``model``'s frozen backbone,
    its threshold fitted on test-style episodes of the fold's *training* classes.

    Returns the matcher and the fit (threshold, its training-class mIoU, the curve).
    For the embedded world the training pool is the one drawn for ``fold`` (no
    test class in any image), as the shipped models are trained on.
    """
    from canetlib.data import make_dataset, make_source
    from canetlib.data.source import TrainingClassesAsTest
    from canetlib.model.baseline import PrototypeMatcher

    kw = {"fold": fold} if dataset == "synthetic" else {}
    source = TrainingClassesAsTest(make_source(dataset, root, **kw))
    fit_set = make_dataset(dataset, fold=fold, split="test", shots=shots, episodes=episodes,
                           seed=seed, source=source)
    matcher = PrototypeMatcher.from_model(model)
    fit = fit_threshold(matcher, fit_set, input_size=input_size or default_input_size(dataset))
    fit.update({"episodes": episodes, "seed": seed, "classes": "training classes of the fold"})
    return matcher, fit


# -- several seeds --------------------------------------------------------------
SEED_KEYS = ("miou", "fbiou", "miou_init", "all_objects_miou")
SEED_LIST_KEYS = ("miou_per_iteration", "fbiou_per_iteration")


def evaluate_seeds(model: CANet, seeds: Iterable[int], dataset_factory: Callable[[int], Dataset],
                   **kw: Any) -> dict[str, Any]:
    """Run :func:`evaluate` on ``dataset_factory(seed)`` for each seed; mean and sample std.

    Returns ``seeds``, ``runs`` (each seed's full result), the means under
    the usual keys (``miou``, ``fbiou``, ``miou_per_iteration``, ...,
    ``per_class_iou``), the sample standard deviations under ``*_std``, and
    ``episodes`` (the total).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate_seeds needs at least one seed")
    with torch.inference_mode(), _maybe_cache(model, kw.get("cache_features", True)):
        runs = [evaluate(model, dataset_factory(s), **kw) for s in seeds]  # one cache for all
    out: dict[str, Any] = {"seeds": seeds, "runs": runs}
    for key in SEED_KEYS:
        if any(r.get(key) is None for r in runs):
            continue
        out[key], out[f"{key}_std"] = mean_std([r[key] for r in runs])
    for key in SEED_LIST_KEYS:
        stats = [mean_std(vals) for vals in zip(*(r[key] for r in runs))]
        out[key] = [m for m, _ in stats]
        out[f"{key}_std"] = [s for _, s in stats]
    names = [n for n in runs[0]["per_class_iou"] if all(n in r["per_class_iou"] for r in runs)]
    out["per_class_iou"] = {n: mean_std([r["per_class_iou"][n] for r in runs])[0] for n in names}
    out["per_class_iou_std"] = {n: mean_std([r["per_class_iou"][n] for r in runs])[1]
                                for n in names}
    out["missing_classes"] = sorted({n for r in runs for n in r["missing_classes"]})
    out["episodes"] = sum(r["episodes"] for r in runs)
    out["seconds"] = sum(r["seconds"] for r in runs)
    out["settings"] = runs[0]["settings"]
    return out
