"""FSS-1000 in its published layout, with the class split the field uses.

Layout under ``root`` (as the authors' archive extracts; its top folder
``fewshot_data/`` may be ``root`` itself or sit inside it)::

    <class name>/<N>.jpg     an image of the class
    <class name>/<N>.png     its mask: the object white (255) on black (0)
    splits/trn.txt           the training classes, one folder name a line (520)
    splits/val.txt           the validation classes (240)
    splits/test.txt          the test classes (240)

The split lists are not part of the archive: they are the files of the split the
field uses (``data/splits/fss/{trn,val,test}.txt`` of HSNet, Min et al. 2021);
copy them into ``root/splits/`` (``train.txt`` is accepted for ``trn.txt``), or
give another folder with ``splits=``. A mask is binary: a pixel from 128 up is the
folder's class, everything else background (no ignore label). Every image shows one
class, so the "every object" baseline is the ground truth on FSS-1000.

Class ids run past 255 (1000 classes), so masks are ``uint16``; id 255 stays the
ignore label and names no class (:data:`RESERVED_NAME`, in no part of the split).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from canetlib.data.class_split import CLASS_SETS, ClassSplit, SplitClasses
from canetlib.data.imageio import image_size, read_image
from canetlib.data.source import SegmentationSource

#: the number of classes in each part of the field's split
REFERENCE_SPLIT = {"train": 520, "val": 240, "test": 240}
#: the split list files under ``root/splits`` (first name found is read)
SPLIT_LISTS = {"train": ("trn.txt", "train.txt"), "val": ("val.txt",), "test": ("test.txt",)}
#: the top folder of the authors' archive
ARCHIVE_FOLDER = "fewshot_data"
#: where the authors publish the archive (a Google Drive page, not a direct download)
OFFICIAL_PAGE = "https://github.com/HKUSTCV/FSS-1000"
#: the name of class id 255, which is the ignore label and never a class
RESERVED_NAME = "(255: ignore)"


def image_root(root: str | os.PathLike[str]) -> Path:
    """The folder holding the class folders: ``root/fewshot_data`` if present, else ``root``."""
    root = Path(root)
    inner = root / ARCHIVE_FOLDER
    return inner if inner.is_dir() else root


def _read_list(path: Path) -> tuple[str, ...]:
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(n for n in names if n)


def read_split_lists(folder: str | os.PathLike[str]) -> ClassSplit:
    """The split of ``folder/{trn,val,test}.txt`` (class ids: training, then validation,
    then test classes, each in file order; id 255 is :data:`RESERVED_NAME`)."""
    folder = Path(folder)
    parts: dict[str, tuple[str, ...]] = {}
    for part, names in SPLIT_LISTS.items():
        found = [folder / n for n in names if (folder / n).is_file()]
        if not found:
            raise FileNotFoundError(
                f"{folder / names[0]}: FSS-1000 split list missing; copy the field's split "
                f"files (trn.txt, val.txt, test.txt: one class folder name a line, "
                f"{REFERENCE_SPLIT['train']}/{REFERENCE_SPLIT['val']}/{REFERENCE_SPLIT['test']} "
                f"classes) into {folder}")
        parts[part] = _read_list(found[0])
    classes = parts["train"] + parts["val"] + parts["test"]
    if len(classes) >= 255:  # keep id 255 for the ignore label
        classes = classes[:254] + (RESERVED_NAME,) + classes[254:]
    return ClassSplit(classes=classes, train=parts["train"], val=parts["val"], test=parts["test"],
                      origin=str(folder))


def class_images(folder: Path) -> list[str]:
    """The image numbers of one class folder: every ``N.jpg`` that has ``N.png``."""
    stems = {p.stem for p in folder.glob("*.png")}
    return sorted((p.stem for p in folder.glob("*.jpg") if p.stem in stems),
                  key=lambda s: (len(s), s))


class FSS1000Source(SplitClasses, SegmentationSource):
    """FSS-1000 (see the module docstring): image ids are ``"<class>/<N>"``.

    Args:
        root: the dataset folder.
        splits: the folder of the split lists (default ``root/splits``).
        class_set: ``"test"`` (default) or ``"val"``: which held-out classes the test
            episodes show.
        split: a :class:`ClassSplit` instead of the split lists.
    """

    name = "fss1000"

    def __init__(self, root: str | os.PathLike[str], splits: str | os.PathLike[str] | None = None,
                 class_set: str = "test", split: ClassSplit | None = None, fold: int = 0) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder (FSS-1000: one folder per "
                                    "class, N.jpg with N.png)")
        if class_set not in CLASS_SETS:
            raise ValueError(f"class_set must be one of {CLASS_SETS}, got {class_set!r}")
        self.split = split if split is not None else read_split_lists(
            Path(splits) if splits is not None else self.root / "splits")
        self.split.check_fold(int(fold))
        self.fold, self.class_set = int(fold), class_set
        self.class_names = self.split.classes
        self.images = image_root(self.root)
        self._image_classes: dict[str, frozenset[int]] = {}
        for class_id, name in enumerate(self.class_names, start=1):
            if name == RESERVED_NAME:
                continue
            folder = self.images / name
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: class folder missing (the split lists name "
                                        f"{name!r}; is --root the folder holding the class "
                                        "folders?)")
            for n in class_images(folder):
                self._image_classes[f"{name}/{n}"] = frozenset({class_id})
        self._targets = self._image_classes

    def image_ids(self) -> list[str]:
        """Every image id (``"<class>/<N>"``) of the classes in the split."""
        return sorted(self._image_classes)

    def _path(self, image_id: str, suffix: str) -> Path:
        return self.images / f"{image_id}{suffix}"

    def load_image(self, image_id: str) -> np.ndarray:
        return read_image(self._path(image_id, ".jpg"))

    def load_mask(self, image_id: str) -> np.ndarray:
        """``(H, W)`` uint16: the class id where the mask is from 128 up, else 0."""
        from PIL import Image

        path = self._path(image_id, ".png")
        with Image.open(path) as img:
            grey = np.asarray(img.convert("L"))
        size = image_size(self._path(image_id, ".jpg"))
        if grey.shape != size:
            raise ValueError(f"{path}: mask is {grey.shape[1]}x{grey.shape[0]}, its image "
                             f"{size[1]}x{size[0]} (width x height); they must match")
        class_id = next(iter(self._image_classes[image_id]))
        return np.where(grey >= 128, class_id, 0).astype(np.uint16)

    def counts(self) -> dict[str, int]:
        """Classes and images in each part of the split."""
        out: dict[str, int] = {}
        for part in ("train", "val", "test"):
            ids = set(self.split.ids(getattr(self.split, part)))
            out[f"{part}_classes"] = len(ids)
            out[f"{part}_images"] = sum(1 for cs in self._image_classes.values() if cs & ids)
        return out


__all__ = ["ARCHIVE_FOLDER", "OFFICIAL_PAGE", "REFERENCE_SPLIT", "RESERVED_NAME", "SPLIT_LISTS", "FSS1000Source",
           "class_images", "image_root", "read_split_lists"]
