"""Small datasets on disk in the layouts of your own data: a folder dataset and FSS-1000.

:func:`build_world_folder` writes scenes of the embedded world as a folder dataset
(:mod:`canetlib.data.folder`) with a class split; :func:`build_fss_tree` writes a
miniature FSS-1000 in its published layout (:mod:`canetlib.data.fss1000`), split lists
included, and :func:`build_fss_archive` zips one as the authors' archive is zipped.
Both are pure functions of their seeds; tests and the book use them.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from canetlib.data.class_split import ClassSplit
from canetlib.data.folder import write_folder_dataset
from canetlib.data.fss1000 import ARCHIVE_FOLDER

#: (training, validation, test) classes of the miniature FSS-1000
FSS_MINI_PARTS = (4, 2, 2)


def build_world_folder(root: str | os.PathLike[str], images_per_class: int = 6,
                       test_images_per_class: int = 6, seed: int = 1, fold: int = 0,
                       image_size: tuple[int, int] = (160, 200),
                       val_classes: Sequence[str] = ()) -> ClassSplit:
    """Write embedded-world scenes as a folder dataset under ``root``; return its split.

    The classes are the world's 20, split as fold ``fold`` of the world: its 5 test
    classes are ``test``, the others ``train`` (less ``val_classes``). The training
    images come from the world's training pool drawn for ``fold`` (no test class in any
    of them), ``images_per_class`` a class; the test images from its test pool.
    ``seed`` is the world's seed (the shipped models were trained on seed 0's).
    """
    from canetlib.data.world.synthetic import SyntheticSource

    world = SyntheticSource(seed=seed, train_images_per_class=images_per_class,
                            test_images_per_class=test_images_per_class,
                            image_size=image_size, fold=fold)
    names = tuple(world.class_names[:20])
    test = tuple(names[c - 1] for c in world.test_classes(fold))
    held = set(test) | set(val_classes)
    split = ClassSplit(classes=names, train=tuple(n for n in names if n not in held),
                       val=tuple(val_classes), test=test)
    items = ((f"{part}_{k:04d}", world.load_image(i), world.load_mask(i))
             for part in ("train", "test") for k, i in enumerate(world.image_ids(part)))
    write_folder_dataset(root, items, split)
    return split


@dataclass(frozen=True)
class FssTree:
    """What :func:`build_fss_tree` wrote: the root and the class names of each part."""

    root: Path
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def _fss_pair(rng: np.random.Generator, colour: np.ndarray, size: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """One image (an ellipse of ``colour`` on noise) and its 0/255 mask with a soft edge."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    ry, rx = rng.uniform(0.2, 0.3) * h, rng.uniform(0.2, 0.3) * w
    r = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2
    image = rng.integers(0, 120, size=(h, w, 3)).astype(np.uint8)
    image[r <= 1] = colour
    mask = np.where(r <= 1, 255, 0).astype(np.uint8)
    mask[(r > 1) & (r <= 1.1)] = 60  # a soft edge below 128: background
    mask[(r > 0.9) & (r <= 1)] = 200  # and one from 128 up: object
    return image, mask


def build_fss_tree(root: str | os.PathLike[str], parts: tuple[int, int, int] = FSS_MINI_PARTS,
                   images_per_class: int = 10, size: tuple[int, int] = (64, 80), seed: int = 0,
                   split_files: bool = True, inside_archive_folder: bool = False) -> FssTree:
    """A miniature FSS-1000 under ``root``: one folder per class with ``1.jpg .. N.jpg`` and
    ``N.png`` (white object on black), and ``root/splits/{trn,val,test}.txt``.

    ``inside_archive_folder`` puts the class folders in ``root/fewshot_data/`` as the
    authors' archive extracts; ``split_files=False`` leaves the split lists out.
    """
    root = Path(root)
    classes = [f"thing{i:02d}" for i in range(sum(parts))]
    base = root / ARCHIVE_FOLDER if inside_archive_folder else root
    rng = np.random.default_rng(seed)
    for name in classes:
        colour = rng.integers(130, 256, size=3).astype(np.uint8)
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, images_per_class + 1):
            image, mask = _fss_pair(rng, colour, size)
            Image.fromarray(image).save(folder / f"{n}.jpg", quality=95)
            Image.fromarray(mask).save(folder / f"{n}.png")
    a, b = parts[0], parts[0] + parts[1]
    tree = FssTree(root, tuple(classes[:a]), tuple(classes[a:b]), tuple(classes[b:]))
    if split_files:
        write_fss_split_lists(root / "splits", tree)
    return tree


def write_fss_split_lists(folder: Path, tree: FssTree) -> None:
    """``folder/{trn,val,test}.txt``: one class folder name a line."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, names in (("trn.txt", tree.train), ("val.txt", tree.val), ("test.txt", tree.test)):
        (folder / file).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def build_fss_archive(path: str | os.PathLike[str], tree: FssTree) -> Path:
    """Zip the class folders of ``tree`` as ``fewshot_data/<class>/<N>.jpg|png`` into ``path``
    (the split lists stay out, as in the authors' archive)."""
    path = Path(path)
    base = tree.root / ARCHIVE_FOLDER if (tree.root / ARCHIVE_FOLDER).is_dir() else tree.root
    with zipfile.ZipFile(path, "w") as zf:
        for name in (*tree.train, *tree.val, *tree.test):
            for file in sorted((base / name).iterdir()):
                zf.write(file, f"{ARCHIVE_FOLDER}/{name}/{file.name}")
    return path


__all__ = ["FSS_MINI_PARTS", "FssTree", "build_fss_archive", "build_fss_tree",
           "build_world_folder", "write_fss_split_lists"]
