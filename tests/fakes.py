"""Builders of miniature dataset trees in the real on-disk formats (data tests).

* :func:`build_pascal_tree`: VOC2012 (JPEGs, palette PNG class/object masks
  with 255 borders, ImageSets lists) and SBD (``GTcls`` / ``GTinst`` .mat
  structs written by :func:`scipy.io.savemat`, train/val lists), laid out as
  the official archives extract. It lives in the library
  (:mod:`canetlib.data.world.miniature`, also used by the book) and is re-exported here.
* :func:`build_coco_tree`: COCO 2014 folders and ``instances_*.json`` with
  polygon, uncompressed-RLE (crowd) and compressed-RLE annotations.
* :func:`make_tar` / :func:`make_zip` / :func:`tar_with_member`: archives for
  the download tests.

Every builder returns the expectations the tests check against. (The model /
evaluator stand-ins live in ``evalfakes.py``.)
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from canetlib.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES
from canetlib.data.world.miniature import (  # noqa: F401  (re-exported for the PASCAL tests)
    PascalTree,
    build_pascal_tree,
    save_jpeg,
    save_palette_png,
)

# --------------------------------------------------------------------------- COCO

COCO_SHAPE = (64, 96)


def rect_polygon(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def uncompressed_rle(region: np.ndarray) -> dict[str, object]:
    """COCO uncompressed RLE: column-major run lengths, starting with zeros."""
    flat = region.astype(np.uint8).flatten(order="F")
    counts: list[int] = []
    current, run = 0, 0
    for value in flat.tolist():
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(region.shape), "counts": counts}


def compressed_rle(region: np.ndarray) -> dict[str, object]:
    rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rect(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int] = COCO_SHAPE) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    region[r0:r1, c0:c1] = True
    return region


def class_of(category_id: int) -> int:
    """Contiguous class id (1..80) of a COCO category id."""
    return COCO_CATEGORY_IDS.index(category_id) + 1


@dataclass
class CocoTree:
    """Expected results of preparing the miniature COCO tree."""

    root: Path
    train_pairs: list[tuple[str, int]]
    val_pairs: list[tuple[str, int]]
    crowd: dict[str, np.ndarray]
    exact: dict[tuple[str, int], np.ndarray]


def _coco_json(
    folder: str, images: list[dict[str, object]], anns: list[dict[str, object]]
) -> dict[str, object]:
    categories = [
        {"id": cid, "name": name, "supercategory": "thing"}
        for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES, strict=True)
    ]
    return {
        "info": {"description": f"miniature {folder}"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": categories,
    }


def build_coco_tree(root: Path) -> CocoTree:
    """Write train2014/val2014 images and instances json with 4 images in all.

    train 9:  person polygon (50 x 48, kept) + dog polygon (10 x 10, dropped)
              + a crowd of people as uncompressed RLE (-> 255)
    train 25: toothbrush as compressed RLE (48 x 56, kept) + bottle as a two-part
              polygon (two 36 x 30 parts = 2160 px, kept)
    val 42:   chair polygon (60 x 50, kept) + person compressed RLE (10 x 10, dropped)
    val 73:   no annotation
    """
    h, w = COCO_SHAPE
    person, dog, toothbrush, bottle, chair = 1, 18, 90, 44, 62
    crowd_region = _rect(50, 64, 60, 96)
    toothbrush_region = _rect(0, 48, 0, 56)
    small_person = _rect(50, 60, 80, 90)
    train_anns = [
        {
            "id": 1,
            "image_id": 9,
            "category_id": person,
            "iscrowd": 0,
            "area": 2400.0,
            "bbox": [0, 0, 50, 48],
            "segmentation": [rect_polygon(0, 0, 50, 48)],
        },
        {
            "id": 2,
            "image_id": 9,
            "category_id": dog,
            "iscrowd": 0,
            "area": 100.0,
            "bbox": [70, 10, 10, 10],
            "segmentation": [rect_polygon(70, 10, 80, 20)],
        },
        {
            "id": 3,
            "image_id": 9,
            "category_id": person,
            "iscrowd": 1,
            "area": float(crowd_region.sum()),
            "bbox": [60, 50, 36, 14],
            "segmentation": uncompressed_rle(crowd_region),
        },
        {
            "id": 4,
            "image_id": 25,
            "category_id": toothbrush,
            "iscrowd": 0,
            "area": float(toothbrush_region.sum()),
            "bbox": [0, 0, 56, 48],
            "segmentation": compressed_rle(toothbrush_region),
        },
        {
            "id": 5,
            "image_id": 25,
            "category_id": bottle,
            "iscrowd": 0,
            "area": 2160.0,
            "bbox": [60, 0, 36, 62],
            "segmentation": [rect_polygon(60, 0, 96, 30), rect_polygon(60, 32, 96, 62)],
        },
    ]
    val_anns = [
        {
            "id": 6,
            "image_id": 42,
            "category_id": chair,
            "iscrowd": 0,
            "area": 3000.0,
            "bbox": [10, 4, 60, 50],
            "segmentation": [rect_polygon(10, 4, 70, 54)],
        },
        {
            "id": 7,
            "image_id": 42,
            "category_id": person,
            "iscrowd": 0,
            "area": 100.0,
            "bbox": [80, 50, 10, 10],
            "segmentation": compressed_rle(small_person),
        },
    ]
    pools = {"train2014": ([9, 25], train_anns), "val2014": ([42, 73], val_anns)}
    for folder, (ids, anns) in pools.items():
        images: list[dict[str, object]] = []
        for image_id in ids:
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            save_jpeg(root / folder / name, image_id, shape=COCO_SHAPE)
            images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        ann_path = root / "annotations" / f"instances_{folder}.json"
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        ann_path.write_text(json.dumps(_coco_json(folder, images, anns)))
    train = "COCO_train2014_{:012d}".format
    val = "COCO_val2014_{:012d}".format
    return CocoTree(
        root=root,
        train_pairs=[
            (train(9), class_of(person)),
            (train(25), class_of(bottle)),
            (train(25), class_of(toothbrush)),
        ],
        val_pairs=[(val(42), class_of(chair))],
        crowd={train(9): crowd_region},
        exact={
            (train(25), class_of(toothbrush)): toothbrush_region,
            (val(42), class_of(person)): small_person,
        },
    )


# --------------------------------------------------------------------------- archives


def make_tar(folder: Path, archive: Path, arcname_root: str | None = None) -> Path:
    """Tar (gzip when the name ends in .tgz/.tar.gz) everything under ``folder``."""
    gzip = archive.name.endswith((".tgz", ".tar.gz"))
    with tarfile.open(archive, "w:gz") if gzip else tarfile.open(archive, "w") as tar:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            tar.add(
                path, arcname=f"{arcname_root}/{name}" if arcname_root else name, recursive=False
            )
    return archive


def make_zip(folder: Path, archive: Path) -> Path:
    """Zip every file under ``folder`` (names relative to it)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


def tar_with_member(
    archive: Path, name: str, data: bytes = b"x", *, symlink_to: str | None = None
) -> Path:
    """A tar holding one safe file plus one member ``name`` (a file, or a symlink)."""
    with tarfile.open(archive, "w") as tar:
        safe = tarfile.TarInfo("ok/file.txt")
        safe.size = 2
        tar.addfile(safe, io.BytesIO(b"ok"))
        member = tarfile.TarInfo(name)
        if symlink_to is not None:
            member.type = tarfile.SYMTYPE
            member.linkname = symlink_to
            tar.addfile(member)
        else:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return archive
