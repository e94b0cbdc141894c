"""Builders of miniature dataset trees in the real on-disk formats (data tests).

* :func:`build_pascal_tree`: VOC2012 (JPEGs, palette PNG class/object masks
  with 255 borders, ImageSets lists) and SBD (``GTcls`` / ``GTinst`` .mat
  structs written by :func:`scipy.io.savemat`, train/val lists), laid out as
  the official archives extract.
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image
from pycocotools import mask as mask_utils

from canetlib.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES
from canetlib.data.imageio import voc_palette

SHAPE = (96, 128)  # (H, W): not square, so a transposition shows


@dataclass(frozen=True)
class Obj:
    """A rectangle of class ``cls`` (rows r0:r1, cols c0:c1), ``cut`` pixels removed."""

    cls: int
    r0: int
    r1: int
    c0: int
    c1: int
    cut: int = 0

    def region(self, shape: tuple[int, int] = SHAPE) -> np.ndarray:
        region = np.zeros(shape, dtype=bool)
        region[self.r0 : self.r1, self.c0 : self.c1] = True
        if self.cut:  # drop pixels from the end of the last row
            region[self.r1 - 1, self.c1 - self.cut : self.c1] = False
        return region


def paint(
    objects: list[Obj], border: bool, shape: tuple[int, int] = SHAPE
) -> tuple[np.ndarray, np.ndarray]:
    """(class mask, instance mask) uint8; VOC-style 255 one-pixel rings when ``border``."""
    cls = np.zeros(shape, dtype=np.uint8)
    inst = np.zeros(shape, dtype=np.uint8)
    for number, obj in enumerate(objects, start=1):
        region = obj.region(shape)
        cls[region] = obj.cls
        inst[region] = number
    if border:
        for obj in objects:
            ring = np.zeros(shape, dtype=bool)
            ring[max(obj.r0 - 1, 0) : obj.r1 + 1, max(obj.c0 - 1, 0) : obj.c1 + 1] = True
            ring &= cls == 0
            cls[ring] = 255
            inst[ring] = 255
    return cls, inst


def save_palette_png(arr: np.ndarray, path: Path) -> None:
    """Save as a mode-"P" PNG with the VOC colours (as VOC masks are stored)."""
    img = Image.fromarray(arr.astype(np.uint8))
    img.putpalette(voc_palette())
    assert img.mode == "P"
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def save_jpeg(path: Path, seed: int, shape: tuple[int, int] = SHAPE, gray: bool = False) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    img = Image.fromarray(pixels[:, :, 0] if gray else pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90)


def _boundaries(labels: np.ndarray, n: int) -> np.ndarray:
    """A MATLAB cell (object array) of ``n`` sparse boundary maps, as SBD stores."""
    cells = np.empty((n,), dtype=object)
    for k in range(n):
        region = labels == k + 1
        edge = np.zeros(labels.shape, dtype=np.uint8)
        edge[:-1] |= (region[:-1] != region[1:]).astype(np.uint8)
        cells[k] = scipy.sparse.csc_matrix(edge)
    return cells


def save_sbd_mats(sbd: Path, image_id: str, objects: list[Obj]) -> None:
    """Write ``cls/<id>.mat`` (GTcls) and ``inst/<id>.mat`` (GTinst) like SBD."""
    cls, inst = paint(objects, border=False)
    present = np.array(sorted({o.cls for o in objects}), dtype=np.uint8)
    gtcls = {"Segmentation": cls, "Boundaries": _boundaries(cls, 20), "CategoriesPresent": present}
    gtinst = {
        "Segmentation": inst,
        "Boundaries": _boundaries(inst, len(objects)),
        "Categories": np.array([o.cls for o in objects], dtype=np.uint8),
    }
    for folder, key, struct in (("cls", "GTcls", gtcls), ("inst", "GTinst", gtinst)):
        (sbd / folder).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(sbd / folder / f"{image_id}.mat", {key: struct})


# --------------------------------------------------------------------------- PASCAL

BIG = {"r0": 8, "r1": 56, "c0": 8, "c1": 56}  # 48 x 48 = 2304 >= 2048
SMALL = {"r0": 70, "r1": 90, "c0": 100, "c1": 120}  # 20 x 20 = 400

#: VOC images with SegmentationClass/Object masks: id -> objects
VOC_MASKS: dict[str, list[Obj]] = {
    # val
    "2008_000001": [Obj(1, **BIG), Obj(6, **SMALL)],
    "2008_000002": [
        Obj(11, 60, 92, 2, 66),  # 32 x 64 = 2048: kept
        Obj(15, 4, 52, 70, 118),
        Obj(15, 4, 34, 2, 32),
    ],  # two persons
    "2008_000003": [
        Obj(16, 60, 92, 2, 66, cut=1),  # 2047: dropped
        Obj(20, **BIG),
    ],
    # train
    "2007_000010": [Obj(2, 4, 60, 4, 44), Obj(2, 4, 60, 50, 90), Obj(7, **SMALL)],
    "2007_000020": [Obj(7, **BIG)],
}
#: SBD annotations: id -> objects (2007_000020 disagrees with VOC: VOC must win)
SBD_MASKS: dict[str, list[Obj]] = {
    "2009_000100": [Obj(3, 4, 60, 4, 44), Obj(3, 4, 60, 50, 90), Obj(12, **SMALL)],
    "2009_000200": [Obj(18, **BIG)],
    "2008_000003": [Obj(4, **BIG)],  # a VOC val image: must stay out of training
    "2008_000001": [Obj(5, **BIG)],  # a VOC val image: must stay out of training
    "2007_000020": [Obj(8, **BIG)],  # VOC train image, different SBD mask
    "2007_000010": [Obj(2, 4, 60, 4, 44)],
}
VOC_TRAIN = ["2007_000010", "2007_000020"]
VOC_VAL = ["2008_000001", "2008_000002", "2008_000003"]
SBD_TRAIN = ["2009_000100", "2008_000003", "2007_000020"]
SBD_VAL = ["2009_000200", "2008_000001", "2007_000010"]


@dataclass
class PascalTree:
    """Expected results of preparing the miniature PASCAL tree."""

    root: Path
    val_ids: list[str] = field(default_factory=lambda: sorted(VOC_VAL))
    train_ids: list[str] = field(
        default_factory=lambda: sorted(["2007_000010", "2007_000020", "2009_000100", "2009_000200"])
    )
    val_pairs: list[tuple[str, int]] = field(
        default_factory=lambda: [
            ("2008_000001", 1),
            ("2008_000002", 11),
            ("2008_000002", 15),
            ("2008_000003", 20),
        ]
    )
    train_pairs: list[tuple[str, int]] = field(
        default_factory=lambda: [
            ("2007_000010", 2),
            ("2007_000020", 7),
            ("2009_000100", 3),
            ("2009_000200", 18),
        ]
    )
    val_per_fold: list[int] = field(default_factory=lambda: [1, 0, 2, 1])
    train_per_fold: list[int] = field(default_factory=lambda: [2, 1, 0, 1])


def build_pascal_tree(root: Path) -> PascalTree:
    """Write the miniature VOC2012 + SBD tree under ``root``."""
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    for image_id, objects in VOC_MASKS.items():
        cls, inst = paint(objects, border=True)
        save_palette_png(cls, voc / "SegmentationClass" / f"{image_id}.png")
        save_palette_png(inst, voc / "SegmentationObject" / f"{image_id}.png")
    for image_id, objects in SBD_MASKS.items():
        save_sbd_mats(sbd, image_id, objects)
    for seed, image_id in enumerate(sorted(set(VOC_MASKS) | set(SBD_MASKS))):
        if image_id != "2009_000200":  # only in SBD img/: checks the fallback
            save_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", seed)
        if image_id in SBD_MASKS:
            save_jpeg(sbd / "img" / f"{image_id}.jpg", seed, gray=image_id == "2009_000200")
    save_jpeg(voc / "JPEGImages" / "2010_999999.jpg", 99)  # unlabelled, as in VOC
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (sets / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    return PascalTree(root)


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
