"""A folder of your own images and masks with a class split: a source to train and test on.

Layout under ``root``::

    images/ID.jpg        (or .png, .bmp, ... any of IMAGE_SUFFIXES)
    masks/ID.png         0 background, 1..N the classes of split.json, 255 ignore
    split.json           {"classes": [...], "train": [...], "val": [...], "test": [...]}
                         or {"classes": [...], "folds": [[...], [...], ...]}

Mask value ``i`` is ``classes[i - 1]`` of the split file (:mod:`canetlib.data.class_split`).
Training episodes come from the images that show only training classes; test episodes
from every image of a test class (``class_set="val"``: of a validation class). With
folds, fold ``f``'s classes are its test classes and the source is built for one fold
(its training pool leaves out the images of that fold's test classes).
:func:`write_folder_dataset` writes this layout from arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from canetlib.data.class_split import (
    CLASS_SETS,
    ClassSplit,
    SplitClasses,
    read_split_file,
    write_split_file,
)
from canetlib.data.source import IGNORE_INDEX, IMAGE_SUFFIXES, ImageMaskSource

#: the split file of a folder dataset, under its root
SPLIT_FILE = "split.json"
#: the least fraction of an image a class covers for an episode to target it there
MIN_AREA = 0.01


def folder_files(root: Path, images: str = "images", masks: str = "masks"
                 ) -> tuple[dict[str, Path], dict[str, Path]]:
    """(image files, mask files) by id: every ``images/ID.*`` with its ``masks/ID.png``."""
    for sub in (images, masks):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root / sub}: no such folder; a folder dataset holds "
                                    f"{images}/ID.jpg, {masks}/ID.png and {SPLIT_FILE}")
    mask_files = {p.stem: p for p in sorted((root / masks).glob("*.png"))}
    image_files = {p.stem: p for p in sorted((root / images).iterdir())
                   if p.suffix.lower() in IMAGE_SUFFIXES}
    unmasked = sorted(set(image_files) - set(mask_files))
    if unmasked:
        raise ValueError(f"{root / images}: {len(unmasked)} image(s) have no mask "
                         f"{masks}/ID.png, e.g. {image_files[unmasked[0]].name}")
    if not image_files:
        raise ValueError(f"{root / images}: no image ({', '.join(IMAGE_SUFFIXES)})")
    return image_files, {k: mask_files[k] for k in image_files}


class FolderSource(SplitClasses, ImageMaskSource):
    """Images and masks in a folder with a class split (see the module docstring).

    Args:
        root: the dataset folder.
        fold: the fold (a split into folds; else 0).
        class_set: ``"test"`` (default) or ``"val"``: which held-out classes the test
            episodes show.
        split: a :class:`ClassSplit` instead of ``root/split.json``.
        name: labels messages (default ``"folder"``).
        min_area: the fraction of an image's pixels a class must cover for the image to
            be one of the class's episode images (a sliver of an object can vanish from a
            training crop); any pixel still counts for keeping held-out classes out of
            training.

    Every mask is read once here, to index which classes each image shows; a value that
    is neither 0, 255 nor a class id of the split is refused, naming the file.
    """

    def __init__(self, root: str | os.PathLike[str], fold: int = 0, class_set: str = "test",
                 split: ClassSplit | None = None, name: str = "folder",
                 min_area: float = MIN_AREA) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder (a folder dataset: images/, "
                                    f"masks/ and {SPLIT_FILE})")
        if class_set not in CLASS_SETS:
            raise ValueError(f"class_set must be one of {CLASS_SETS}, got {class_set!r}")
        self.split = split if split is not None else read_split_file(self.root / SPLIT_FILE)
        self.split.check_fold(int(fold))
        self.fold, self.class_set, self.name = int(fold), class_set, str(name)
        self.class_names = self.split.classes
        if self.num_classes >= IGNORE_INDEX:
            raise ValueError(f"{self.split.origin}: {self.num_classes} classes; masks are 8-bit "
                             f"with {IGNORE_INDEX} for ignore, so at most {IGNORE_INDEX - 1}")
        self._images, self._masks = folder_files(self.root)  # type: ignore[assignment]
        if not 0.0 <= min_area < 1.0:
            raise ValueError(f"min_area must be a fraction in [0, 1), got {min_area!r}")
        self._image_classes, self._targets = {}, {}
        for image_id in self._images:
            self._image_classes[image_id], self._targets[image_id] = self._index(image_id,
                                                                                  min_area)
        self.split.test_ids(self.fold, class_set)  # an empty 'val' is refused here

    def _index(self, image_id: str, min_area: float) -> tuple[frozenset[int], frozenset[int]]:
        """(classes the mask shows, classes covering at least ``min_area`` of it)."""
        mask = self.load_mask(image_id)
        values, counts = np.unique(mask, return_counts=True)
        area = {int(v): int(n) for v, n in zip(values, counts) if v not in (0, IGNORE_INDEX)}
        bad = sorted(v for v in area if not 1 <= v <= self.num_classes)
        if bad:
            raise ValueError(f"{self._masks[image_id]}: mask values {bad} are not classes of "
                             f"{self.split.origin} (allowed: 0 background, 1..{self.num_classes}"
                             f" the classes, {IGNORE_INDEX} ignore)")
        big = {v for v, n in area.items() if n >= min_area * mask.size}
        return frozenset(area), frozenset(big)

    def images_per_class(self) -> dict[str, int]:
        """Class name -> number of images where it is large enough to be a target."""
        counts = dict.fromkeys(self.class_names, 0)
        for shown in self._targets.values():
            for c in shown:
                counts[self.class_names[c - 1]] += 1
        return counts


def write_folder_dataset(root: str | os.PathLike[str],
                         items: Iterable[tuple[str, np.ndarray, np.ndarray]],
                         split: ClassSplit, quality: int = 95) -> Path:
    """Write ``(id, image, mask)`` items and ``split`` as a folder dataset under ``root``.

    Images become ``images/ID.jpg`` (``(H, W, 3)`` uint8), masks ``masks/ID.png``; an
    existing file is never replaced.
    """
    from PIL import Image

    from canetlib.data.imageio import write_label_png

    root = Path(root)
    split_path = root / SPLIT_FILE
    if split_path.exists():
        raise FileExistsError(f"{split_path} exists; write the dataset into an empty folder")
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, image, mask in items:
        jpg, png = root / "images" / f"{image_id}.jpg", root / "masks" / f"{image_id}.png"
        for path in (jpg, png):
            if path.exists():
                raise FileExistsError(f"{path} exists; write the dataset into an empty folder")
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(jpg, quality=quality)
        write_label_png(np.asarray(mask, dtype=np.uint8), png)
    write_split_file(split, split_path)
    return root


__all__ = ["MIN_AREA", "SPLIT_FILE", "FolderSource", "folder_files", "write_folder_dataset"]
