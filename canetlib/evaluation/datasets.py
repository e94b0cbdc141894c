"""What the evaluator reads from a dataset of test episodes: source name, classes, class names."""

from __future__ import annotations

from collections.abc import Iterable

from torch.utils.data import Dataset


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
