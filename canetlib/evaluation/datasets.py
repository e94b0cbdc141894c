"""Test episodes for the evaluator: building them, their classes and class names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch.utils.data import Dataset


def build_dataset(name: str, *, root: str | None = None, fold: int = 0, shots: int = 1,
                  episodes: int = 1000, seed: int = 0, box_support: bool = False,
                  **kwargs: Any) -> Dataset:
    """Test episodes from :func:`canetlib.data.make_dataset` (``split="test"``)."""
    from canetlib.data import make_dataset

    return make_dataset(name, root=root, fold=fold, split="test", shots=shots,
                        episodes=episodes, seed=seed, box_support=box_support, **kwargs)


def source_name(dataset: Dataset) -> str | None:
    """``dataset.source.name`` (else ``dataset.name``), ``None`` if neither exists."""
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
