"""Typed evaluation results that also read like dicts.

:class:`EvalResult` (from :func:`canetlib.evaluation.evaluate`) and
:class:`SeedsResult` (from :func:`canetlib.evaluation.evaluate_seeds`) are frozen
dataclasses; ``result["miou"]``, ``result.get(...)``, ``keys()`` and ``in`` work as on
a dict, and ``to_dict()`` gives the plain dict (the JSON that
``python -m canetlib evaluate --json`` writes).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar


class ResultMapping(Mapping[str, Any]):
    """A read-only dict view of a result dataclass; keys are those of :meth:`to_dict`."""

    #: fields left out of the dict view when ``None``
    _omit_if_none: ClassVar[tuple[str, ...]] = ()

    def _keys(self) -> list[str]:
        return [f.name for f in fields(self)  # type: ignore[arg-type]
                if not (f.name in self._omit_if_none and getattr(self, f.name) is None)]

    def __getitem__(self, key: str) -> Any:
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is read-only; result.to_dict() is a dict "
                        "you may change")

    def to_dict(self) -> dict[str, Any]:
        """A plain, independent dict (JSON-ready with ``default=str``)."""
        return {k: _plain(getattr(self, k)) for k in self._keys()}


def _plain(value: Any) -> Any:
    if isinstance(value, ResultMapping):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


@dataclass(frozen=True, eq=False)
class EvalResult(ResultMapping):
    """One evaluation (:func:`canetlib.evaluation.evaluate`); scores are in %."""

    #: mIoU / FB-IoU of the final iteration
    miou: float
    fbiou: float
    #: mIoU of iteration 0 (CANet-Init)
    miou_init: float
    #: index 0 = CANet-Init, last = final
    miou_per_iteration: list[float]
    fbiou_per_iteration: list[float]
    #: class name -> IoU at the final iteration
    per_class_iou: dict[str, float]
    #: the support-free baseline (every object of the query marked), ``None`` without
    #: ``query_all_objects`` masks
    all_objects_miou: float | None
    per_class_iou_per_iteration: dict[str, list[float]]
    #: ``{"id", "name", "episodes"}`` per test class
    classes: list[dict[str, Any]]
    #: names of test classes without an episode (left out of the mean)
    missing_classes: list[str]
    episodes: int
    seconds: float
    episodes_per_second: float
    #: iterations, scales, batch_size, input_size ``[H, W]`` or ``None``, device, amp, ...
    settings: dict[str, Any]
    #: each episode's IoU per iteration (``per_episode=True`` only)
    per_episode: list[dict[str, Any]] | None = None
    #: seconds in data loading, the backbone, the head and the metrics, and in all
    #: (:class:`canetlib.evaluation.speed.StageTimes`)
    timings: dict[str, float] | None = None

    _omit_if_none: ClassVar[tuple[str, ...]] = ("per_episode", "timings")

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The model input size used, ``None`` for native sizes."""
        size = self.settings.get("input_size")
        return (int(size[0]), int(size[1])) if size is not None else None


@dataclass(frozen=True, eq=False)
class SeedsResult(ResultMapping):
    """Several seeds (:func:`canetlib.evaluation.evaluate_seeds`): means and sample stds."""

    seeds: list[int]
    runs: list[EvalResult]
    miou: float
    miou_std: float
    fbiou: float
    fbiou_std: float
    miou_init: float
    miou_init_std: float
    #: ``None`` (and left out of the dict view) when a run has no all-objects score
    all_objects_miou: float | None
    all_objects_miou_std: float | None
    miou_per_iteration: list[float]
    miou_per_iteration_std: list[float]
    fbiou_per_iteration: list[float]
    fbiou_per_iteration_std: list[float]
    #: classes scored in every run
    per_class_iou: dict[str, float]
    per_class_iou_std: dict[str, float]
    missing_classes: list[str]
    #: the total over the seeds
    episodes: int
    seconds: float
    #: the first run's
    settings: dict[str, Any]

    _omit_if_none: ClassVar[tuple[str, ...]] = ("all_objects_miou", "all_objects_miou_std")
