"""The prepared on-disk layout PASCAL-5i and COCO-20i share, for writers and readers alike.

Preparing a benchmark leaves, under ``<root>/canet``, one semantic mask and one
instance mask per image, pair lists ``lists/{train,val}_*.txt`` of
``<image id> <class id>`` lines, and a JSON marker. :class:`PreparedLayout`
names those paths (each dataset subclasses it with its folder and marker
names), :class:`PreparedSource` is the reader base that refuses an unprepared
root and serves the pair lists, and the functions below are what both
``prepare`` steps share: class areas and the area rule (a pair is dropped when
its class covers fewer than :data:`MIN_AREA` pixels), pair lists written
atomically, and the marker that makes a re-run a no-op while an interrupted
run starts over from its finished files. It needs only numpy and two small canetlib
modules (source, fsutil), so the readers can import it cheaply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from canetlib.data.source import SPLITS, SegmentationSource
from canetlib.model.files import write_atomic

#: the area rule of the field: a class must cover at least 2 x 32 x 32 pixels
MIN_AREA = 2 * 32 * 32

Pair = tuple[str, int]


@dataclass(frozen=True)
class PreparedLayout:
    """The paths of a prepared benchmark under ``root/canet``.

    Subclasses set the mask folder names and the marker name, and add the
    paths of their raw inputs.
    """

    root: Path

    #: folder of the semantic masks, under :attr:`out`
    class_folder: ClassVar[str] = "SegmentationClass"
    #: folder of the instance masks, under :attr:`out`
    object_folder: ClassVar[str] = "SegmentationObject"
    #: file name of the completion marker, under :attr:`out`
    marker_name: ClassVar[str] = ".prepared.json"

    @property
    def out(self) -> Path:
        return self.root / "canet"

    @property
    def class_dir(self) -> Path:
        return self.out / self.class_folder

    @property
    def object_dir(self) -> Path:
        return self.out / self.object_folder

    @property
    def lists_dir(self) -> Path:
        return self.out / "lists"

    @property
    def marker(self) -> Path:
        return self.out / self.marker_name

    def list_file(self, pool: str, fold: int | None = None) -> Path:
        """``lists/{pool}_all.txt`` or ``lists/{pool}_fold{fold}.txt`` (pool: train/val)."""
        suffix = "all" if fold is None else f"fold{fold}"
        return self.lists_dir / f"{pool}_{suffix}.txt"


class PreparedSource(SegmentationSource):
    """Reader base of a prepared benchmark: ``"train"`` is the training pool, ``"test"``
    the ``val`` pool (the test images)."""

    def _open(self, layout: PreparedLayout, title: str, command: str) -> None:
        """Read the pool pair lists of ``layout``; if the marker is missing, raise
        FileNotFoundError naming ``title``, the marker and the prepare ``command``."""
        if not layout.marker.exists():
            raise FileNotFoundError(
                f"{title} is not prepared in {layout.root} (no {layout.marker}). Run: {command}"
            )
        self._pairs: dict[str, list[Pair]] = {
            "train": read_pairs(layout.list_file("train")),
            "test": read_pairs(layout.list_file("val")),
        }

    def image_pairs(self, split: str) -> list[Pair]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return list(self._pairs[split])


def class_areas(mask: np.ndarray, num_classes: int) -> dict[int, int]:
    """Pixel count of every class id ``1..num_classes`` present in ``mask``."""
    counts = np.bincount(mask.ravel(), minlength=256)
    return {c: int(counts[c]) for c in range(1, num_classes + 1) if counts[c]}


def area_pairs(ids: Iterable[str], areas: dict[str, dict[int, int]],
               min_area: int = MIN_AREA) -> list[Pair]:
    """(image, class) pairs whose class covers at least ``min_area`` pixels."""
    return [(i, c) for i in ids for c, n in sorted(areas[i].items()) if n >= min_area]


def remove_partials(*folders: Path) -> None:
    """Delete temporary ``.part`` files an interrupted run left behind."""
    for folder in folders:
        if folder.is_dir():
            for stale in folder.glob(".*.part"):
                stale.unlink(missing_ok=True)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write one item per line, atomically."""
    write_atomic(path, "".join(f"{line}\n" for line in lines))


def write_pairs(path: Path, pairs: Iterable[Pair]) -> None:
    """Write ``image_id class_id`` lines, atomically."""
    write_lines(path, (f"{i} {c}" for i, c in pairs))


def read_pairs(path: Path) -> list[Pair]:
    """Read a pair list written by :func:`write_pairs`."""
    pairs: list[Pair] = []
    for line in path.read_text().splitlines():
        if line.strip():
            image_id, class_id = line.split()
            pairs.append((image_id, int(class_id)))
    return pairs


def load_marker(marker: Path, required: Iterable[Path], version: int,
                min_area: int = MIN_AREA) -> dict[str, Any] | None:
    """The stored counts of a finished prepare of this version, else ``None``."""
    if not marker.exists():
        return None
    try:
        data = json.loads(marker.read_text())
    except ValueError:
        return None
    complete = all(p.exists() for p in required)
    if data.get("version") != version or data.get("min_area") != min_area or not complete:
        return None
    return data["counts"]


def write_marker(marker: Path, counts: dict[str, Any], version: int,
                 min_area: int = MIN_AREA) -> None:
    """Record a finished prepare (atomically): its version, area rule and counts."""
    write_atomic(marker, json.dumps({"version": version, "min_area": min_area, "counts": counts},
                                    indent=2))
