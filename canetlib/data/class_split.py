"""Which classes of a dataset are for training, validation and test (or folds).

A :class:`ClassSplit` names a dataset's classes (``classes[i]`` is class id ``i + 1``)
and cuts them either into ``train`` / ``val`` / ``test`` lists or into ``folds``
(fold ``f``'s classes are its test classes, the others its training classes).
:func:`read_split_file` reads the JSON file of a folder dataset::

    {"classes": ["square", "disc", "star", "ring"],
     "train": ["square", "disc"], "val": ["star"], "test": ["ring"]}

    {"classes": ["square", "disc", "star", "ring"], "folds": [["square", "disc"], ["star", "ring"]]}

:class:`SplitClasses` turns a split into a :class:`SegmentationSource`'s classes and
pools: the training pool holds only images that show no held-out class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: which held-out classes a source tests on (``"val"``: choose settings; ``"test"``: report)
CLASS_SETS = ("test", "val")
#: the keys a split file may hold
SPLIT_KEYS = ("classes", "train", "val", "test", "folds")


@dataclass(frozen=True)
class ClassSplit:
    """Class names and their split: ``train``/``val``/``test`` name lists, or ``folds``."""

    classes: tuple[str, ...]
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    folds: tuple[tuple[str, ...], ...] = ()
    #: where the split came from (labels messages)
    origin: str = "split"

    def __post_init__(self) -> None:
        where = self.origin
        if not self.classes:
            raise ValueError(f"{where}: 'classes' is empty; list the class names (id = position + 1)")
        if len(set(self.classes)) != len(self.classes):
            twice = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"{where}: class names must be unique, {twice} appear twice")
        if self.folds and (self.train or self.val or self.test):
            raise ValueError(f"{where}: give either 'folds' or 'train'/'val'/'test', not both")
        groups = ({f"folds[{i}]": f for i, f in enumerate(self.folds)} if self.folds
                  else {"train": self.train, "val": self.val, "test": self.test})
        seen: dict[str, str] = {}
        known = set(self.classes)
        for key, names in groups.items():
            for name in names:
                if name not in known:
                    raise ValueError(f"{where}: {key} names {name!r}, which is not in 'classes' "
                                     f"({', '.join(self.classes[:5])}{', ...' if len(self.classes) > 5 else ''})")
                if name in seen:
                    raise ValueError(f"{where}: {name!r} is in both {seen[name]} and {key}; a "
                                     "class belongs to one part of the split")
                seen[name] = key
        if self.folds:
            if len(self.folds) < 2 or any(not f for f in self.folds):
                raise ValueError(f"{where}: 'folds' needs at least 2 non-empty lists of test "
                                 f"classes, got {len(self.folds)}")
        else:
            for key in ("train", "test"):
                if not groups[key]:
                    raise ValueError(f"{where}: '{key}' is empty; a split needs training and "
                                     "test classes")

    @property
    def num_folds(self) -> int:
        return len(self.folds) if self.folds else 1

    def ids(self, names: Sequence[str]) -> list[int]:
        """Class ids (1-based) of ``names``, in the order of ``classes``."""
        wanted = set(names)
        return [i + 1 for i, c in enumerate(self.classes) if c in wanted]

    def check_fold(self, fold: int) -> None:
        if not 0 <= fold < self.num_folds:
            raise ValueError(f"{self.origin}: fold must be in 0..{self.num_folds - 1} "
                             f"({self.num_folds} fold(s)), got {fold}")

    def test_ids(self, fold: int, class_set: str = "test") -> list[int]:
        """Fold ``fold``'s test classes (``class_set="val"``: the validation classes)."""
        self.check_fold(fold)
        if class_set not in CLASS_SETS:
            raise ValueError(f"class set must be one of {CLASS_SETS}, got {class_set!r}")
        if self.folds:
            if class_set == "val":
                raise ValueError(f"{self.origin}: a split into folds has no 'val' classes; "
                                 "use class set 'test'")
            return self.ids(self.folds[fold])
        if class_set == "val" and not self.val:
            raise ValueError(f"{self.origin}: 'val' is empty, so there are no validation classes")
        return self.ids(self.val if class_set == "val" else self.test)

    def train_ids(self, fold: int) -> list[int]:
        """Fold ``fold``'s training classes."""
        self.check_fold(fold)
        if self.folds:
            held = set(self.folds[fold])
            return [i + 1 for i, c in enumerate(self.classes) if c not in held]
        return self.ids(self.train)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form that :func:`read_split_file` reads."""
        out: dict[str, Any] = {"classes": list(self.classes)}
        if self.folds:
            out["folds"] = [list(f) for f in self.folds]
        else:
            out.update(train=list(self.train), val=list(self.val), test=list(self.test))
        return out


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: '{key}' must be a list of class names, got {value!r}"[:300])
    return tuple(value)


def split_from_dict(data: Mapping[str, Any], origin: str = "split") -> ClassSplit:
    """A :class:`ClassSplit` from the JSON form (``classes`` plus ``train``/``val``/``test``
    or ``folds``)."""
    if not isinstance(data, Mapping):
        raise ValueError(  # noqa: TRY004 - a bad file, reported as bad input (exit 2)
            f"{origin}: expected a JSON object with 'classes' and 'train'/'test' "
            f"(or 'folds'), got {type(data).__name__}")
    unknown = sorted(set(data) - set(SPLIT_KEYS))
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {unknown}; allowed: {', '.join(SPLIT_KEYS)}")
    if "classes" not in data:
        raise ValueError(f"{origin}: no 'classes' list (the class names; mask value i is "
                         "classes[i - 1])")
    folds = data.get("folds")
    if folds is not None and not isinstance(folds, list):
        raise ValueError(f"{origin}: 'folds' must be a list of lists of class names")
    return ClassSplit(
        classes=_names(data["classes"], "classes", origin),
        train=_names(data.get("train", []), "train", origin),
        val=_names(data.get("val", []), "val", origin),
        test=_names(data.get("test", []), "test", origin),
        folds=tuple(_names(f, f"folds[{i}]", origin) for i, f in enumerate(folds or [])),
        origin=origin)


def read_split_file(path: str | os.PathLike[str]) -> ClassSplit:
    """Read a split file (JSON, see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no split file; write one as JSON, e.g. "
                                '{"classes": ["a", "b", "c"], "train": ["a", "b"], "test": ["c"]}')
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return split_from_dict(data, origin=str(path))


def write_split_file(split: ClassSplit, path: str | os.PathLike[str]) -> Path:
    """Write ``split`` as the JSON that :func:`read_split_file` reads, atomically."""
    from canetlib.model.files import write_atomic

    write_atomic(path, json.dumps(split.to_dict(), indent=1) + "\n")
    return Path(path)


class SplitClasses:
    """Classes and pools of a source from its :class:`ClassSplit` (a mixin).

    The host sets ``split``, ``fold``, ``class_set``, ``_image_classes`` (image id -> the
    class ids it shows) and ``_targets`` (image id -> the class ids large enough to be an
    episode's target). The training pool of the fold holds the images that show only
    training classes; the test pool every image of a test class.
    """

    split: ClassSplit
    fold: int
    class_set: str
    _image_classes: dict[str, frozenset[int]]
    _targets: dict[str, frozenset[int]]

    @property
    def num_folds(self) -> int:  # type: ignore[override]
        return self.split.num_folds

    def test_classes(self, fold: int) -> list[int]:
        return self.split.test_ids(fold, self.class_set)

    def train_classes(self, fold: int) -> list[int]:
        if fold != self.fold and self.split.num_folds > 1:
            raise ValueError(f"{self.split.origin}: this source was built for fold {self.fold}, "
                             f"its training pool leaves out fold {self.fold}'s test images; "
                             f"build it with fold={fold}")
        return self.split.train_ids(fold)

    def image_pairs(self, split: str) -> list[tuple[str, int]]:
        from canetlib.data.source import SPLITS

        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "test":
            wanted = set(self.split.test_ids(self.fold, self.class_set))
            return [(i, c) for i, cs in self._targets.items() for c in sorted(cs)
                    if c in wanted]
        allowed = set(self.split.train_ids(self.fold))
        return [(i, c) for i, cs in self._targets.items() if self._image_classes[i] <= allowed
                for c in sorted(cs)]


__all__ = ["CLASS_SETS", "ClassSplit", "SplitClasses", "read_split_file", "split_from_dict",
           "write_split_file"]
