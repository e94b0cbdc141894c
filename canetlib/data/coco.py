"""COCO-20i at training and test time: the reader of the prepared dataset and its fold schemes.

:class:`CocoSource` reads what :func:`canetlib.data.prepare.coco.prepare_coco`
wrote under ``root/canet`` (see :class:`CocoLayout`)::

    SegmentationClass/<id>.png    semantic mask: class ids 1..80 in COCO category
                                  order, 0 background, 255 crowd (ignore)
    SegmentationObject/<id>.png   instance ids 1..N (8-bit palette or 16-bit PNG)
    lists/train_all.txt           (image, class) pairs of train2014 (training pool)
    lists/val_all.txt             pairs of val2014 (test pool)
    lists/images.tsv              id, folder, file name, height, width of every image
    .prepared-coco.json           completion marker with the counts

and the images from the raw ``train2014/`` and ``val2014/`` folders. ``<id>``
is the image file name without extension (``COCO_val2014_000000000042``).

Class-to-fold schemes (:class:`CocoSource` ``split_scheme``, :func:`scheme_classes`):

* ``"interleaved"`` (default, the common choice): fold ``i`` tests classes
  ``4k + i + 1``, ``k = 0..19``.
* ``"blocks"``: fold ``i`` tests classes ``20i + 1 .. 20i + 20``.
* ``"canet"``: the CANet paper's own split. The paper says only that 40 classes
  are used for training, 20 for validation and 20 for test (39,107 / 5,895 /
  9,673 samples), training images from COCO train and validation/test images
  from COCO val; it does not list the classes. Our reading: classes 1..40
  train, 41..60 validation, 61..80 test, as a single fold 0. Numbers obtained
  with it are not guaranteed to match the paper's class choice.

This module needs neither pycocotools nor the preparation code
(:mod:`canetlib.data.prepare.coco`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canetlib.data.imageio import read_image, read_label, read_mask
from canetlib.data.prepared import MIN_AREA, PreparedLayout, PreparedSource
from canetlib.model.files import PathLike

__all__ = [
    "COCO_CATEGORY_IDS",
    "COCO_CLASSES",
    "MIN_AREA",
    "SPLIT_SCHEMES",
    "CocoLayout",
    "CocoSource",
    "prepare_command",
    "scheme_classes",
]

#: COCO class names; class id ``i + 1`` is ``COCO_CLASSES[i]`` (COCO category order)
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane",
    "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird",
    "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut",
    "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
#: the 80 COCO category ids (1..90 with gaps), in the same order as COCO_CLASSES
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
)

SPLIT_SCHEMES = ("interleaved", "blocks", "canet")

def prepare_command(root: PathLike) -> str:
    """The shell command that prepares COCO-20i in ``root``."""
    return f"python -m canetlib prepare coco --root {root} [--download]"


def scheme_classes(scheme: str, fold: int) -> dict[str, list[int]]:
    """Class ids per role (``train``, ``val``, ``test``) of ``fold`` under ``scheme``."""
    n = len(COCO_CLASSES)
    if scheme == "canet":
        if fold != 0:
            raise ValueError(f"coco/canet has a single fold 0, got {fold}")
        return {
            "train": list(range(1, 41)),
            "val": list(range(41, 61)),
            "test": list(range(61, 81)),
        }
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"split_scheme must be one of {SPLIT_SCHEMES}, got {scheme!r}")
    if not 0 <= fold < 4:
        raise ValueError(f"coco/{scheme}: fold must be in 0..3, got {fold}")
    if scheme == "interleaved":
        test = [4 * k + fold + 1 for k in range(n // 4)]
    else:
        test = list(range(20 * fold + 1, 20 * fold + 21))
    held = set(test)
    return {"train": [c for c in range(1, n + 1) if c not in held], "val": [], "test": test}


@dataclass(frozen=True)
class CocoLayout(PreparedLayout):
    """Every path ``prepare_coco`` and :class:`CocoSource` use."""

    marker_name = ".prepared-coco.json"

    def images(self, folder: str) -> Path:
        return self.root / folder

    def annotations(self, folder: str) -> Path:
        return self.root / "annotations" / f"instances_{folder}.json"

    @property
    def index_file(self) -> Path:
        return self.lists_dir / "images.tsv"


class CocoSource(PreparedSource):
    """COCO-20i as prepared by ``prepare_coco``.

    ``image_pairs("train")`` is the train2014 pool, ``"test"`` the val2014
    pool. ``split_scheme`` picks the class-to-fold assignment (see the module
    docstring); ``"canet"`` has one fold and also :meth:`val_classes`.
    """

    name = "coco"
    class_names = COCO_CLASSES

    def __init__(self, root: PathLike, split_scheme: str = "interleaved") -> None:
        if split_scheme not in SPLIT_SCHEMES:
            raise ValueError(f"split_scheme must be one of {SPLIT_SCHEMES}, got {split_scheme!r}")
        self.split_scheme = split_scheme
        self.num_folds = 1 if split_scheme == "canet" else 4
        self.layout = CocoLayout(Path(root))
        self._open(self.layout, "COCO-20i", prepare_command(self.layout.root))
        self._files: dict[str, Path] = {}
        for line in self.layout.index_file.read_text().splitlines():
            if line.strip():
                image_id, folder, file_name = line.split("\t")[:3]
                self._files[image_id] = self.layout.root / folder / file_name

    def _roles(self, fold: int) -> dict[str, list[int]]:
        self._check_fold(fold)
        return scheme_classes(self.split_scheme, fold)

    def test_classes(self, fold: int) -> list[int]:
        return self._roles(fold)["test"]

    def train_classes(self, fold: int) -> list[int]:
        return self._roles(fold)["train"]

    def val_classes(self, fold: int) -> list[int]:
        """Validation classes (only the ``"canet"`` scheme has any: 41..60)."""
        return self._roles(fold)["val"]

    def image_path(self, image_id: str) -> Path:
        if image_id not in self._files:
            raise KeyError(f"COCO-20i: unknown image id {image_id!r}")
        return self._files[image_id]

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))

    def load_mask(self, image_id: str) -> np.ndarray:
        return read_mask(self.layout.class_dir / f"{image_id}.png")

    def load_instances(self, image_id: str, class_id: int) -> np.ndarray:
        mask = self.load_mask(image_id)
        inst = read_label(self.layout.object_dir / f"{image_id}.png")
        if inst.shape != mask.shape:
            raise ValueError(
                f"COCO-20i {image_id}: instance mask shape {inst.shape} != {mask.shape}"
            )
        return np.where(mask == class_id, inst, 0).astype(np.int32)
