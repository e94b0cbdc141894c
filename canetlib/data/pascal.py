"""PASCAL-5i at training and test time: the reader of the prepared dataset and its folds.

:class:`PascalSource` reads what :func:`canetlib.data.prepare.pascal.prepare_pascal`
wrote under ``root/canet`` (see :class:`PascalLayout`)::

    SegmentationClassAug/<id>.png    VOC mask where it exists, else SBD cls (0..20, 255)
    SegmentationObjectAug/<id>.png   the matching instance mask (VOC object PNG or SBD inst)
    lists/val_all.txt                every (image, class) pair of the test pool
    lists/train_all.txt              every pair of the training pool
    lists/val_fold{f}.txt            test-pool pairs of fold f's own classes 5f+1..5f+5
    lists/train_fold{f}.txt          training-pool pairs of fold f's own classes
    .prepared-pascal.json            completion marker with the counts

and the images from the raw trees, ``VOCdevkit/VOC2012/JPEGImages`` or else
``benchmark_RELEASE/dataset/img``. Fold ``f`` holds out classes ``5f+1..5f+5``
(:func:`fold_classes`). The widely used list sizes per fold are kept here
(:data:`REFERENCE_VAL_PAIRS`, :data:`REFERENCE_TRAIN_PAIRS`) to compare a prepare
with. This module does not import the preparation code (scipy.io, the
downloader): ``prepare_pascal`` lives in :mod:`canetlib.data.prepare.pascal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from canetlib.data.imageio import read_image, read_label, read_mask
from canetlib.data.prepared import MIN_AREA, PreparedLayout, PreparedSource
from canetlib.data.source import IGNORE_INDEX, PASCAL_CLASSES
from canetlib.model.files import PathLike

__all__ = [
    "MIN_AREA",
    "REFERENCE_TRAIN_PAIRS",
    "REFERENCE_VAL_PAIRS",
    "PascalLayout",
    "PascalSource",
    "fold_classes",
    "prepare_command",
]

NUM_FOLDS = 4
CLASSES_PER_FOLD = 5
#: widely used PASCAL-5i list sizes: val pairs of each fold's own classes
REFERENCE_VAL_PAIRS: tuple[int, ...] = (346, 451, 725, 346)
#: widely used PASCAL-5i list sizes: training pairs of each fold's own classes
REFERENCE_TRAIN_PAIRS: tuple[int, ...] = (2286, 3425, 5883, 2086)

def prepare_command(root: PathLike) -> str:
    """The shell command that prepares PASCAL-5i in ``root``."""
    return f"python -m canetlib prepare pascal --root {root} [--download]"


def fold_classes(fold: int) -> list[int]:
    """Fold ``fold``'s own classes: ``5f+1 .. 5f+5``."""
    return list(range(CLASSES_PER_FOLD * fold + 1, CLASSES_PER_FOLD * fold + CLASSES_PER_FOLD + 1))


@dataclass(frozen=True)
class PascalLayout(PreparedLayout):
    """Every path ``prepare_pascal`` and :class:`PascalSource` use."""

    class_folder = "SegmentationClassAug"
    object_folder = "SegmentationObjectAug"
    marker_name = ".prepared-pascal.json"

    @property
    def voc(self) -> Path:
        return self.root / "VOCdevkit" / "VOC2012"

    @property
    def sbd(self) -> Path:
        return self.root / "benchmark_RELEASE" / "dataset"


class PascalSource(PreparedSource):
    """PASCAL-5i as prepared by ``prepare_pascal``.

    ``image_pairs("test")`` is the VOC2012 val pool, ``"train"`` the training
    pool. Fold ``f`` holds out classes ``5f+1..5f+5``.
    """

    name = "pascal"
    class_names = PASCAL_CLASSES
    num_folds = NUM_FOLDS

    def __init__(self, root: PathLike) -> None:
        self.layout = PascalLayout(Path(root))
        self._open(self.layout, "PASCAL-5i", prepare_command(self.layout.root))

    def image_path(self, image_id: str) -> Path:
        """The JPEG of ``image_id`` (VOC JPEGImages, else the SBD img folder)."""
        for folder in (self.layout.voc / "JPEGImages", self.layout.sbd / "img"):
            path = folder / f"{image_id}.jpg"
            if path.exists():
                return path
        raise FileNotFoundError(
            f"PASCAL-5i: no image {image_id}.jpg in "
            f"{self.layout.voc / 'JPEGImages'} or {self.layout.sbd / 'img'}"
        )

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))

    def load_mask(self, image_id: str) -> np.ndarray:
        path = self.layout.class_dir / f"{image_id}.png"
        if not path.exists():
            raise FileNotFoundError(
                f"PASCAL-5i: no prepared mask {path}; run: {prepare_command(self.layout.root)}"
            )
        return read_mask(path)

    def load_instances(self, image_id: str, class_id: int) -> np.ndarray:
        """Instance ids of ``class_id`` (VOC object PNG or SBD inst), 0 elsewhere.

        Without a stored instance mask, connected components of the class
        region stand in for instances.
        """
        mask = self.load_mask(image_id)
        region = mask == class_id
        path = self.layout.object_dir / f"{image_id}.png"
        if not path.exists():
            labels, _ = ndimage.label(region)
            return labels.astype(np.int32)
        inst = read_label(path)
        if inst.shape != mask.shape:
            raise ValueError(f"{path}: instance mask shape {inst.shape} != class mask {mask.shape}")
        return np.where(region & (inst != IGNORE_INDEX), inst, 0).astype(np.int32)
