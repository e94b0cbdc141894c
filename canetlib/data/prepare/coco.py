"""Preparing COCO-20i: COCO 2014 instance annotations in, the prepared masks and pair lists out.

Raw layout under ``root`` (as the official zips extract)::

    train2014/COCO_train2014_*.jpg        from train2014.zip
    val2014/COCO_val2014_*.jpg            from val2014.zip
    annotations/instances_{train,val}2014.json   from annotations_trainval2014.zip

:func:`prepare_coco` (optionally after fetching :data:`TRAIN_ARCHIVE`,
:data:`VAL_ARCHIVE` and :data:`ANNOTATIONS_ARCHIVE` with
:func:`canetlib.data.archive.ensure_dataset`) decodes every instance annotation once
(polygons, uncompressed and compressed RLE, via pycocotools), paints one
semantic and one instance mask per image, and writes the pair lists, the image
index and the marker that :class:`canetlib.data.coco.CocoSource` reads (its
module docstring lists the files). Painting order: crowd regions first (255),
then objects from the largest to the smallest annotation, so small objects stay
visible where masks overlap and objects win over crowd regions. A pair is
dropped when its class covers fewer than ``2 * 32 * 32`` pixels, as for
PASCAL-5i. The counts it returns include the pairs per fold of every split
scheme.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from canetlib.model.extras import missing_extra

try:
    from pycocotools import mask as mask_utils
except ImportError as err:
    raise missing_extra("pycocotools", "coco", "prepare coco (COCO-20i annotations)") from err

from canetlib.data.archive import ensure_dataset, unpack_hint
from canetlib.data.coco import (
    COCO_CATEGORY_IDS,
    COCO_CLASSES,
    CocoLayout,
    prepare_command,
    scheme_classes,
)
from canetlib.data.download import RemoteFile, bars_enabled
from canetlib.data.imageio import read_mask, write_label_png
from canetlib.data.prepared import (
    MIN_AREA,
    Pair,
    area_pairs,
    class_areas,
    load_marker,
    remove_partials,
    write_lines,
    write_marker,
    write_pairs,
)
from canetlib.data.source import IGNORE_INDEX
from canetlib.model.files import PathLike

__all__ = [
    "ANNOTATIONS_ARCHIVE",
    "MIN_AREA",
    "POOL_FOLDERS",
    "PREPARE_VERSION",
    "TRAIN_ARCHIVE",
    "VAL_ARCHIVE",
    "decode_segmentation",
    "prepare_coco",
    "render_annotations",
]

# md5s: agreed on by several independent public download scripts; we could
# not download the archives here to recompute them.
TRAIN_ARCHIVE = RemoteFile(
    url="http://images.cocodataset.org/zips/train2014.zip",
    filename="train2014.zip",
    md5="0da8c0bd3d6becc4dcb32757491aca88",
)
VAL_ARCHIVE = RemoteFile(
    url="http://images.cocodataset.org/zips/val2014.zip",
    filename="val2014.zip",
    md5="a3d79f5ed8d289b7a7554ce06a5782b3",
)
ANNOTATIONS_ARCHIVE = RemoteFile(
    url="http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
    filename="annotations_trainval2014.zip",
    md5="0a379cfc70b0e71301e0f377548639bd",
)

#: pool name -> COCO 2014 folder (train2014 = training pool, val2014 = test pool)
POOL_FOLDERS = {"train": "train2014", "val": "val2014"}
#: bump when the prepared output changes meaning (forces a rebuild of lists)
PREPARE_VERSION = 1


#: COCO 2014 folder -> the archive of its images
IMAGE_ARCHIVES = {"train2014": TRAIN_ARCHIVE, "val2014": VAL_ARCHIVE}


def _check_raw(layout: CocoLayout) -> None:
    """Raise FileNotFoundError (with the prepare command, or how to use an archive found in
    the root folder) if an input is missing."""
    command = f"python -m canetlib prepare coco --root {layout.root}"
    for folder in POOL_FOLDERS.values():
        for path, remote in ((layout.images(folder), IMAGE_ARCHIVES[folder]),
                             (layout.annotations(folder), ANNOTATIONS_ARCHIVE)):
            if not path.exists():
                hint = unpack_hint(remote, layout.root, command)
                raise FileNotFoundError(
                    f"COCO-20i: {path} not found"
                    + (hint or f". Prepare the dataset with: {prepare_command(layout.root)}")
                )


# --------------------------------------------------------------------------- decoding


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Binary ``(H, W)`` uint8 mask of a COCO ``segmentation`` field.

    Accepts polygon lists, uncompressed RLE (``counts`` a list) and compressed
    RLE (``counts`` a string).
    """
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
        if not polygons:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        size = [int(v) for v in segmentation.get("size", (height, width))]
        if size != [height, width]:
            raise ValueError(f"RLE size {size} does not match the image size {[height, width]}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"unsupported COCO segmentation of type {type(segmentation).__name__}")
    with warnings.catch_warnings():  # pycocotools + numpy 2 warn about __array__(copy=...)
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = mask_utils.decode(rle)
    return np.ascontiguousarray(decoded, dtype=np.uint8)


def _paint_order(
    anns: Iterable[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(crowd annotations, objects sorted largest first)."""
    crowd = [a for a in anns if a.get("iscrowd")]
    objects = [a for a in anns if not a.get("iscrowd")]
    objects.sort(key=lambda a: -float(a.get("area", 0.0)))  # stable: ties keep file order
    return crowd, objects


def render_annotations(
    anns: Sequence[dict[str, Any]],
    height: int,
    width: int,
    category_to_class: dict[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Semantic (uint8: class ids, 255 crowd) and instance (int32: 1..N) masks of one image."""
    semantic = np.zeros((height, width), dtype=np.uint8)
    instances = np.zeros((height, width), dtype=np.int32)
    crowd, objects = _paint_order(anns)
    for ann in crowd:
        semantic[decode_segmentation(ann["segmentation"], height, width) > 0] = IGNORE_INDEX
    for number, ann in enumerate(objects, start=1):
        category = int(ann["category_id"])
        if category not in category_to_class:
            raise ValueError(f"annotation {ann.get('id')} has unknown category id {category}")
        region = decode_segmentation(ann["segmentation"], height, width) > 0
        semantic[region] = category_to_class[category]
        instances[region] = number
    return semantic, instances


@dataclass(frozen=True)
class _ImageTask:
    """Everything a worker needs to write one image's masks."""

    image_id: str
    file_name: str
    height: int
    width: int
    anns: list[dict[str, Any]]
    class_path: Path
    object_path: Path
    category_to_class: dict[int, int]


def _convert_image(task: _ImageTask) -> tuple[str, dict[int, int]]:
    """Write one image's masks unless done (class mask last); return its class areas."""
    if task.class_path.exists():
        return task.image_id, class_areas(read_mask(task.class_path), len(COCO_CLASSES))
    try:
        semantic, instances = render_annotations(
            task.anns, task.height, task.width, task.category_to_class
        )
    except ValueError as exc:
        raise ValueError(f"COCO image {task.image_id}: {exc}") from exc
    write_label_png(instances, task.object_path)
    write_label_png(semantic, task.class_path)
    return task.image_id, class_areas(semantic, len(COCO_CLASSES))


# --------------------------------------------------------------------------- prepare


def _category_map(categories: Sequence[dict[str, Any]], source: Path) -> dict[int, int]:
    """COCO category id -> contiguous class id 1..80 (ascending category id)."""
    ids = sorted(int(c["id"]) for c in categories)
    if tuple(ids) != COCO_CATEGORY_IDS:
        raise ValueError(
            f"{source}: expected the 80 COCO categories, found ids {ids[:5]}... ({len(ids)} in all)"
        )
    return {cat: index for index, cat in enumerate(ids, start=1)}


def _load_tasks(layout: CocoLayout, folder: str) -> list[_ImageTask]:
    """One task per image of ``instances_<folder>.json``, in image-id order."""
    path = layout.annotations(folder)
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"cannot parse COCO annotation file {path}: {exc}") from exc
    category_to_class = _category_map(data.get("categories", []), path)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in data.get("annotations", []):
        by_image[int(ann["image_id"])].append(ann)
    tasks = []
    for info in sorted(data.get("images", []), key=lambda i: int(i["id"])):
        image_id = Path(info["file_name"]).stem
        tasks.append(
            _ImageTask(
                image_id=image_id,
                file_name=str(info["file_name"]),
                height=int(info["height"]),
                width=int(info["width"]),
                anns=by_image.get(int(info["id"]), []),
                class_path=layout.class_dir / f"{image_id}.png",
                object_path=layout.object_dir / f"{image_id}.png",
                category_to_class=category_to_class,
            )
        )
    return tasks


def _run_tasks(
    tasks: list[_ImageTask], workers: int, progress: bool, desc: str
) -> dict[str, dict[int, int]]:
    """Convert every task, in this process or in ``workers`` processes."""
    bar = tqdm(total=len(tasks), desc=desc, unit=" img", disable=not bars_enabled(progress))
    areas: dict[str, dict[int, int]] = {}
    with bar:
        if workers <= 1:
            results: Iterable[tuple[str, dict[int, int]]] = map(_convert_image, tasks)
            for image_id, area in results:
                areas[image_id] = area
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for image_id, area in pool.map(_convert_image, tasks, chunksize=32):
                    areas[image_id] = area
                    bar.update(1)
    return areas


def _fold_counts(pairs: dict[str, list[Pair]]) -> dict[str, Any]:
    """Pair counts per class, per fold of each scheme (own classes) and for the CANet split."""
    per_class = {
        pool: np.bincount([c for _, c in ps], minlength=81)[1:].tolist()
        for pool, ps in pairs.items()
    }

    def count(pool: str, classes: list[int]) -> int:
        return int(sum(per_class[pool][c - 1] for c in classes))

    counts: dict[str, Any] = {f"{pool}_pairs_per_class": per_class[pool] for pool in pairs}
    for scheme in ("interleaved", "blocks"):
        tests = [scheme_classes(scheme, f)["test"] for f in range(4)]
        counts[scheme] = {
            f"{pool}_pairs_per_fold": [count(pool, t) for t in tests] for pool in pairs
        }
    canet = scheme_classes("canet", 0)
    counts["canet"] = {
        "train_pairs": count("train", canet["train"]),
        "val_pairs": count("val", canet["val"]),
        "test_pairs": count("val", canet["test"]),
    }
    return counts


def _print_counts(counts: dict[str, Any]) -> None:
    print(
        f"COCO-20i: {counts['train_images']} train2014 images ({counts['train_pairs']} pairs), "
        f"{counts['val_images']} val2014 images ({counts['val_pairs']} pairs)"
    )
    for scheme in ("interleaved", "blocks"):
        c = counts[scheme]
        print(
            f"  {scheme}: val pairs per fold {c['val_pairs_per_fold']}, "
            f"train pairs per fold {c['train_pairs_per_fold']}"
        )
    c = counts["canet"]
    print(
        f"  canet (our 40/20/20 reading): train {c['train_pairs']}, val {c['val_pairs']}, "
        f"test {c['test_pairs']} pairs"
    )


def _download(layout: CocoLayout, progress: bool) -> None:
    ensure_dataset(ANNOTATIONS_ARCHIVE, layout.root / "annotations", layout.root, progress=progress)
    ensure_dataset(TRAIN_ARCHIVE, layout.images("train2014"), layout.root, progress=progress)
    ensure_dataset(VAL_ARCHIVE, layout.images("val2014"), layout.root, progress=progress)


def prepare_coco(
    root: PathLike,
    download: bool = False,
    progress: bool = True,
    *,
    workers: int = 1,
) -> dict[str, Any]:
    """Write COCO-20i masks and pair lists under ``root/canet``; return the counts.

    With ``download=True`` the three official COCO 2014 zips are fetched
    (md5-checked, resumable) into ``root/downloads`` and unpacked into
    ``root``. Finished masks are skipped and every file is written atomically,
    so the call can be repeated or restarted; ``.prepared-coco.json`` marks
    completion. ``workers > 1`` converts masks in that many processes.
    """
    layout = CocoLayout(Path(root))
    if download:
        _download(layout, progress)
    _check_raw(layout)
    required = (layout.list_file("train"), layout.list_file("val"), layout.index_file)
    done = load_marker(layout.marker, required, PREPARE_VERSION)
    if done is not None:
        _print_counts(done)
        return done
    for folder in (layout.class_dir, layout.object_dir, layout.lists_dir):
        folder.mkdir(parents=True, exist_ok=True)
    remove_partials(layout.class_dir, layout.object_dir, layout.lists_dir, layout.out)
    return _build(layout, progress, workers)


def _build(layout: CocoLayout, progress: bool, workers: int) -> dict[str, Any]:
    pairs: dict[str, list[Pair]] = {}
    index: list[str] = []
    seen: set[str] = set()
    counts: dict[str, Any] = {}
    for pool, folder in POOL_FOLDERS.items():
        tasks = _load_tasks(layout, folder)
        clash = seen.intersection(t.image_id for t in tasks)
        if clash:
            raise ValueError(
                f"COCO-20i: image names occur in more than one split: {sorted(clash)[:3]}"
            )
        seen.update(t.image_id for t in tasks)
        areas = _run_tasks(tasks, workers, progress, f"COCO {folder} masks")
        pairs[pool] = area_pairs([t.image_id for t in tasks], areas)
        index.extend(f"{t.image_id}\t{folder}\t{t.file_name}\t{t.height}\t{t.width}" for t in tasks)
        counts[f"{pool}_images"] = len(tasks)
        counts[f"{pool}_pairs"] = len(pairs[pool])
        del tasks, areas
    for pool, ps in pairs.items():
        write_pairs(layout.list_file(pool), ps)
    write_lines(layout.index_file, index)
    counts.update(_fold_counts(pairs))
    _print_counts(counts)
    write_marker(layout.marker, counts, PREPARE_VERSION)
    return counts
