"""Miniature PASCAL VOC2012 + SBD trees in the real on-disk formats.

:func:`canetlib.data.prepare.pascal.prepare_pascal` reads the folders that the VOC2012
and SBD archives unpack into. This module writes small trees with exactly that
layout, so the preparation, the episode sampler, the trainer and the evaluator
can run on PASCAL's code path without the 3.4 GB of archives:

* :func:`build_pascal_tree`: ten hand-made images of noise with rectangles,
  chosen to hit every rule of the preparation (VOC beats SBD, VOC val images
  never enter training, the 2048-pixel area threshold, SBD-only images, a
  grayscale JPEG). It returns the expected lists (:class:`PascalTree`); the
  unit tests check ``prepare_pascal`` against them.
* :func:`build_world_tree`: scenes of the embedded synthetic world
  (:class:`canetlib.data.SyntheticSource`) saved as VOC and SBD files, with
  enough images per class to sample episodes on every fold. The book's
  PASCAL chapter uses it on machines without the real data.

Formats written, as in the archives: JPEG images; VOC ``SegmentationClass``
and ``SegmentationObject`` as palette PNGs (VOC colours, 255 on object
outlines); SBD ``cls/<id>.mat`` (struct ``GTcls``) and ``inst/<id>.mat``
(struct ``GTinst``) with a ``Segmentation`` field and sparse ``Boundaries``;
the ``ImageSets/Segmentation/{train,val}.txt`` and SBD ``{train,val}.txt``
lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from canetlib.data.imageio import voc_palette
from canetlib.data.source import IGNORE_INDEX

if TYPE_CHECKING:
    from canetlib.data.world.synthetic import SyntheticSource

__all__ = [
    "BIG", "SBD_MASKS", "SBD_TRAIN", "SBD_VAL", "SHAPE", "SMALL", "VOC_MASKS", "VOC_TRAIN",
    "VOC_VAL", "Obj", "PascalTree", "WorldTree", "build_pascal_tree", "build_world_tree",
    "paint", "save_jpeg", "save_palette_png", "save_sbd_mats", "write_sbd_mats",
]

SHAPE = (96, 128)  # (H, W): not square, so a transposition shows
_PALETTE = voc_palette()


# --------------------------------------------------------------------------- file writers
def save_palette_png(arr: np.ndarray, path: Path) -> None:
    """Save as a mode-"P" PNG with the VOC colours (as VOC masks are stored)."""
    img = Image.fromarray(arr.astype(np.uint8))
    img.putpalette(_PALETTE)
    assert img.mode == "P"
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def save_jpeg(path: Path, seed: int, shape: tuple[int, int] = SHAPE, gray: bool = False) -> None:
    """A JPEG of seeded uniform noise (``gray``: a single-channel JPEG)."""
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


def write_sbd_mats(sbd: Path, image_id: str, cls: np.ndarray, inst: np.ndarray,
                   categories: Sequence[int]) -> None:
    """Write ``cls/<id>.mat`` (GTcls) and ``inst/<id>.mat`` (GTinst) like SBD.

    ``cls`` holds class ids 0..20 (SBD has no 255), ``inst`` instance ids
    1..N, ``categories[i]`` the class of instance ``i + 1``.
    """
    present = np.array(sorted({int(c) for c in np.unique(cls) if c}), dtype=np.uint8)
    gtcls = {"Segmentation": cls.astype(np.uint8), "Boundaries": _boundaries(cls, 20),
             "CategoriesPresent": present}
    gtinst = {
        "Segmentation": inst.astype(np.uint8),
        "Boundaries": _boundaries(inst, len(categories)),
        "Categories": np.array(list(categories), dtype=np.uint8),
    }
    for folder, key, struct in (("cls", "GTcls", gtcls), ("inst", "GTinst", gtinst)):
        (sbd / folder).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(sbd / folder / f"{image_id}.mat", {key: struct})


def _write_lists(voc: Path, sbd: Path, voc_train: Sequence[str], voc_val: Sequence[str],
                 sbd_train: Sequence[str], sbd_val: Sequence[str]) -> None:
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    sbd.mkdir(parents=True, exist_ok=True)
    for path, ids in ((sets / "train.txt", voc_train), (sets / "val.txt", voc_val),
                      (sbd / "train.txt", sbd_train), (sbd / "val.txt", sbd_val)):
        path.write_text("".join(f"{i}\n" for i in ids))


# --------------------------------------------------------------------------- hand-made tree
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
            cls[ring] = IGNORE_INDEX
            inst[ring] = IGNORE_INDEX
    return cls, inst


def save_sbd_mats(sbd: Path, image_id: str, objects: list[Obj]) -> None:
    """Write the SBD ``.mat`` pair of a list of rectangles (see :func:`write_sbd_mats`)."""
    cls, inst = paint(objects, border=False)
    write_sbd_mats(sbd, image_id, cls, inst, [o.cls for o in objects])


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
    """Expected results of preparing the hand-made tree of :func:`build_pascal_tree`."""

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
    """Write the hand-made miniature VOC2012 + SBD tree under ``root``."""
    root = Path(root)
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
    _write_lists(voc, sbd, VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL)
    return PascalTree(root)


# --------------------------------------------------------------------------- world tree
@dataclass
class WorldTree:
    """What :func:`build_world_tree` wrote (image ids by archive and list)."""

    root: Path
    voc_val: list[str]
    voc_train: list[str]
    sbd_train: list[str]
    sbd_val: list[str]

    @property
    def images(self) -> int:
        return len(self.voc_val) + len(self.voc_train) + len(self.sbd_train) + len(self.sbd_val)


def _scene_masks(source: SyntheticSource, image_id: str
                 ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(class mask with 255 outlines, instance ids 1..N covering the outlines, their classes)."""
    semantic = source.load_mask(image_id)
    classes = sorted({int(o.class_id) for o in source.layout(image_id).objects})
    inst = np.zeros(semantic.shape, dtype=np.int32)
    categories: list[int] = []
    for c in classes:
        own = source.load_instances(image_id, c)
        for k in range(1, int(own.max()) + 1):
            region = own == k
            if region.any():
                categories.append(c)
                inst[region] = len(categories)
    return semantic, inst, categories


def build_world_tree(root: str | Path, images_per_class: int = 2, seed: int = 0,
                     image_size: tuple[int, int] = (256, 320), quality: int = 90) -> WorldTree:
    """Write scenes of the embedded world as a VOC2012 + SBD tree under ``root``.

    ``images_per_class`` scenes are made for each of the 20 classes in each
    pool (the scene's main class; every scene also shows 2 or 3 other
    classes), so a fold has enough images per class for 1-shot episodes and
    the 2048-pixel area rule of PASCAL-5i keeps most objects at the default
    ``image_size``. The test pool becomes VOC2012 ``val`` (ids ``2008_*``);
    the training pool alternates between VOC2012 ``train`` (``2007_*``) and
    SBD-only images (``2009_*``, in SBD's ``train.txt`` and ``val.txt`` by
    turns), so that both annotation formats are read. VOC masks keep the
    world's 255 outline band (as VOC has one); SBD masks, like SBD's, have
    none: the band is given back to the object it surrounds.

    The scenes are a pure function of ``seed``; the tree holds
    ``40 * images_per_class`` JPEGs.
    """
    from canetlib.data.world.synthetic import SyntheticSource

    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    source = SyntheticSource(seed=seed, train_images_per_class=images_per_class,
                             test_images_per_class=images_per_class,
                             image_size=(int(image_size[0]), int(image_size[1])))
    tree = WorldTree(root, [], [], [], [])
    for split in ("test", "train"):
        for n, world_id in enumerate(source.image_ids(split)):
            semantic, inst, categories = _scene_masks(source, world_id)
            rgb = Image.fromarray(source.load_image(world_id))
            if split == "test" or n % 2 == 0:
                image_id = f"{2008 if split == 'test' else 2007}_{n:06d}"
                (tree.voc_val if split == "test" else tree.voc_train).append(image_id)
                obj = np.where(semantic == IGNORE_INDEX, IGNORE_INDEX, inst)
                save_palette_png(semantic, voc / "SegmentationClass" / f"{image_id}.png")
                save_palette_png(obj, voc / "SegmentationObject" / f"{image_id}.png")
                path = voc / "JPEGImages" / f"{image_id}.jpg"
            else:
                image_id = f"2009_{n:06d}"
                (tree.sbd_train if n % 4 == 1 else tree.sbd_val).append(image_id)
                cls = np.zeros(semantic.shape, dtype=np.uint8)
                for k, c in enumerate(categories, start=1):
                    cls[inst == k] = c
                write_sbd_mats(sbd, image_id, cls, inst, categories)
                path = sbd / "img" / f"{image_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            rgb.save(path, quality=quality)
    _write_lists(voc, sbd, tree.voc_train, tree.voc_val, tree.sbd_train, tree.sbd_val)
    return tree
