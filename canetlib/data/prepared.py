"""What PASCAL-5i and COCO-20i preparation share: class areas, pair lists, restart markers.

Both ``prepare`` commands convert masks once, drop (image, class) pairs whose
class covers fewer than :data:`MIN_AREA` pixels, write the pair lists
atomically, and leave a JSON marker so that a re-run is a no-op while an
interrupted run starts over from its finished files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from canetlib.data.imageio import write_atomic

#: the area rule of the field: a class must cover at least 2 x 32 x 32 pixels
MIN_AREA = 2 * 32 * 32

Pair = tuple[str, int]


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
