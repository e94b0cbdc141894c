"""Preparing PASCAL-5i: VOC2012 + SBD archives in, the prepared masks and pair lists out.

Raw layout under ``root`` (exactly as the official archives extract)::

    VOCdevkit/VOC2012/JPEGImages/*.jpg
    VOCdevkit/VOC2012/SegmentationClass/*.png     palette PNG, 0..20, 255 border
    VOCdevkit/VOC2012/SegmentationObject/*.png    palette PNG, instance 1..N, 255 border
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    benchmark_RELEASE/dataset/{img,cls,inst}/      SBD; cls/*.mat: GTcls.Segmentation,
    benchmark_RELEASE/dataset/{train,val}.txt      inst/*.mat: GTinst.Segmentation

:func:`prepare_pascal` (optionally after fetching :data:`VOC_ARCHIVE` and
:data:`SBD_ARCHIVE` with :func:`canetlib.data.archive.ensure_dataset`) merges the VOC and SBD
masks into one class mask and one instance mask per image and writes the pair
lists and marker that :class:`canetlib.data.pascal.PascalSource` reads (its
module docstring lists the files). Each list line is ``<image id> <class id>``;
training for fold ``f`` uses the ``train_fold{g}.txt`` of the three other
folds, testing uses ``val_fold{f}.txt``.

Pools: test = VOC2012 val; training = VOC2012 train + SBD train + SBD val,
minus every VOC2012 val image. A pair is dropped when its class covers fewer
than ``2 * 32 * 32`` pixels of the image (:data:`MIN_AREA`).

Reference counts. The lists the field uses hold 346 / 451 / 725 / 346 val
pairs and 2286 / 3425 / 5883 / 2086 training pairs of each fold's own classes
(:data:`REFERENCE_VAL_PAIRS`, :data:`REFERENCE_TRAIN_PAIRS`); compare a full
prepare on the real archives against them (the tests run miniature trees only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from tqdm.auto import tqdm

from canetlib.data.archive import ensure_dataset, unpack_hint
from canetlib.data.download import RemoteFile, bars_enabled
from canetlib.data.imageio import read_label, read_mask, write_label_png
from canetlib.data.pascal import (
    NUM_FOLDS,
    REFERENCE_TRAIN_PAIRS,
    REFERENCE_VAL_PAIRS,
    PascalLayout,
    fold_classes,
    prepare_command,
)
from canetlib.data.prepared import (
    MIN_AREA,
    Pair,
    area_pairs,
    class_areas,
    load_marker,
    remove_partials,
    write_marker,
    write_pairs,
)
from canetlib.data.source import IGNORE_INDEX, PASCAL_CLASSES
from canetlib.model.files import PathLike

__all__ = [
    "MIN_AREA",
    "PREPARE_VERSION",
    "SBD_ARCHIVE",
    "VOC_ARCHIVE",
    "prepare_pascal",
]

VOC_ARCHIVE = RemoteFile(
    url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    filename="VOCtrainval_11-May-2012.tar",
    md5="6cd6e144f989b92b3379bac3b3de84fd",
)
SBD_ARCHIVE = RemoteFile(
    url="http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
    filename="benchmark.tgz",
    md5="82b4d87ceb2ed10f6038a1cba92111cb",
)

#: bump when the prepared output changes meaning (forces a rebuild of lists)
PREPARE_VERSION = 1


# --------------------------------------------------------------------------- raw inputs


def _missing(path: Path, root: Path, what: str, remote: RemoteFile) -> FileNotFoundError:
    """Data missing at ``path``: the prepare command, or how to use ``remote``'s archive
    when it lies in ``root``."""
    hint = unpack_hint(remote, root, f"python -m canetlib prepare pascal --root {root}")
    return FileNotFoundError(
        f"PASCAL-5i: {what} not found at {path}"
        + (hint or f". Prepare the dataset with: {prepare_command(root)}")
    )


def _check_raw(layout: PascalLayout) -> None:
    """Raise FileNotFoundError (with the prepare command, or how to use an archive found in
    the root folder) if an input folder is missing."""
    needed = [
        (layout.voc / "JPEGImages", "VOC2012 JPEGImages", VOC_ARCHIVE),
        (layout.voc / "SegmentationClass", "VOC2012 SegmentationClass", VOC_ARCHIVE),
        (layout.voc / "SegmentationObject", "VOC2012 SegmentationObject", VOC_ARCHIVE),
        (layout.voc / "ImageSets" / "Segmentation" / "train.txt", "VOC2012 train list",
         VOC_ARCHIVE),
        (layout.voc / "ImageSets" / "Segmentation" / "val.txt", "VOC2012 val list", VOC_ARCHIVE),
        (layout.sbd / "cls", "SBD cls folder", SBD_ARCHIVE),
        (layout.sbd / "inst", "SBD inst folder", SBD_ARCHIVE),
        (layout.sbd / "train.txt", "SBD train list", SBD_ARCHIVE),
        (layout.sbd / "val.txt", "SBD val list", SBD_ARCHIVE),
    ]
    for path, what, remote in needed:
        if not path.exists():
            raise _missing(path, layout.root, what, remote)


def _read_ids(path: Path) -> list[str]:
    """Image ids, one per line, blank lines ignored, order kept."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _load_mat_segmentation(path: Path, struct: str) -> np.ndarray:
    """``<struct>.Segmentation`` of an SBD .mat file as an int32 array."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises many types (IndexError, MatReadError...) on bad files
        raise ValueError(f"cannot read SBD file {path}: {type(exc).__name__}: {exc}") from exc
    try:
        seg = mat[struct].Segmentation
    except (KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: no {struct}.Segmentation field (not an SBD file?)") from exc
    arr = np.asarray(seg)
    if arr.ndim != 2:
        raise ValueError(f"{path}: {struct}.Segmentation has shape {arr.shape}, expected 2-D")
    return arr.astype(np.int32)


def _check_class_values(mask: np.ndarray, path: Path) -> np.ndarray:
    """Ensure a class mask holds only 0..20 and 255; return it as uint8."""
    bad = (mask < 0) | ((mask > len(PASCAL_CLASSES)) & (mask != IGNORE_INDEX))
    if bad.any():
        raise ValueError(
            f"{path}: class mask holds values outside 0..20 and 255: "
            f"{sorted(set(np.unique(mask[bad]).tolist()))[:10]}"
        )
    return mask.astype(np.uint8)


def _class_source(layout: PascalLayout, image_id: str) -> tuple[Path, Path]:
    """(class file, instance file) for ``image_id``; the VOC annotation wins over SBD."""
    voc_cls = layout.voc / "SegmentationClass" / f"{image_id}.png"
    if voc_cls.exists():
        return voc_cls, layout.voc / "SegmentationObject" / f"{image_id}.png"
    sbd_cls = layout.sbd / "cls" / f"{image_id}.mat"
    if sbd_cls.exists():
        return sbd_cls, layout.sbd / "inst" / f"{image_id}.mat"
    raise FileNotFoundError(
        f"PASCAL-5i: no class mask for image {image_id}: neither {voc_cls} nor {sbd_cls} exists"
    )


def _read_source_label(path: Path, struct: str) -> np.ndarray:
    return _load_mat_segmentation(path, struct) if path.suffix == ".mat" else read_label(path)


# --------------------------------------------------------------------------- conversion


def _ensure_masks(layout: PascalLayout, image_id: str) -> np.ndarray:
    """Write one image's merged class and instance masks unless done; return the class mask.

    The instance mask is written first and the class mask last, so an existing
    class mask means the image is finished.
    """
    out_cls = layout.class_dir / f"{image_id}.png"
    if out_cls.exists():
        return read_mask(out_cls)
    cls_src, obj_src = _class_source(layout, image_id)
    mask = _check_class_values(_read_source_label(cls_src, "GTcls"), cls_src)
    out_obj = layout.object_dir / f"{image_id}.png"
    if not out_obj.exists() and obj_src.exists():
        inst = _read_source_label(obj_src, "GTinst")
        if inst.shape != mask.shape:
            raise ValueError(
                f"{obj_src}: instance mask shape {inst.shape} != class mask {mask.shape}"
            )
        write_label_png(inst, out_obj)
    write_label_png(mask, out_cls)
    return mask


def _convert_all(
    layout: PascalLayout, ids: Sequence[str], progress: bool
) -> dict[str, dict[int, int]]:
    """Make sure every image in ``ids`` has masks; return its class areas."""
    layout.class_dir.mkdir(parents=True, exist_ok=True)
    layout.object_dir.mkdir(parents=True, exist_ok=True)
    remove_partials(layout.class_dir, layout.object_dir, layout.lists_dir, layout.out)
    areas: dict[str, dict[int, int]] = {}
    for image_id in tqdm(ids, desc="PASCAL masks", unit=" img", disable=not bars_enabled(progress)):
        areas[image_id] = class_areas(_ensure_masks(layout, image_id), len(PASCAL_CLASSES))
    return areas


# --------------------------------------------------------------------------- lists and counts


def _write_lists(layout: PascalLayout, pools: dict[str, list[Pair]]) -> dict[str, list[int]]:
    """Write the pool and per-fold lists; return per-fold pair counts for each pool."""
    counts: dict[str, list[int]] = {}
    for pool, pairs in pools.items():
        write_pairs(layout.list_file(pool), pairs)
        counts[pool] = []
        for fold in range(NUM_FOLDS):
            own = set(fold_classes(fold))
            fold_pairs = [p for p in pairs if p[1] in own]
            write_pairs(layout.list_file(pool, fold), fold_pairs)
            counts[pool].append(len(fold_pairs))
    return counts


def _print_counts(counts: dict[str, Any]) -> None:
    print(
        f"PASCAL-5i: {counts['val_images']} test-pool images, "
        f"{counts['train_images']} training-pool images"
    )
    val, train = counts["val_pairs_per_fold"], counts["train_pairs_per_fold"]
    for fold in range(NUM_FOLDS):
        print(
            f"  fold {fold}: val pairs {val[fold]} (reference {REFERENCE_VAL_PAIRS[fold]}), "
            f"train pairs {train[fold]} (reference {REFERENCE_TRAIN_PAIRS[fold]})"
        )


# --------------------------------------------------------------------------- prepare


def _download(layout: PascalLayout, progress: bool) -> None:
    """Fetch and unpack VOC2012 trainval and SBD unless they are already in ``root``."""
    ensure_dataset(VOC_ARCHIVE, layout.voc, layout.root, progress=progress)
    ensure_dataset(SBD_ARCHIVE, layout.sbd, layout.root, progress=progress)


def prepare_pascal(root: PathLike, download: bool = False, progress: bool = True) -> dict[str, Any]:
    """Build PASCAL-5i masks and pair lists under ``root/canet``; return the counts.

    With ``download=True`` the VOC2012 trainval tar and the SBD tgz are fetched
    (md5-checked, resumable) into ``root/downloads`` and unpacked into ``root``;
    otherwise they must already be unpacked there. Finished files are skipped
    and every file is written atomically, so the call can be repeated or
    restarted after an interruption; ``root/canet/.prepared-pascal.json`` marks
    completion.

    The returned dict holds ``val_pairs_per_fold`` and ``train_pairs_per_fold``
    (pairs of each fold's own classes 5f+1..5f+5) plus pool sizes. On the real
    data compare them with 346/451/725/346 and 2286/3425/5883/2086, the widely
    used list sizes.
    """
    layout = PascalLayout(Path(root))
    if download:
        _download(layout, progress)
    _check_raw(layout)
    required = [layout.list_file(p) for p in ("train", "val")]
    done = load_marker(layout.marker, required, PREPARE_VERSION)
    if done is not None:
        _print_counts(done)
        return done
    return _build(layout, progress)


def _pools(layout: PascalLayout) -> tuple[list[str], list[str]]:
    """(test-pool ids, training-pool ids): VOC val; VOC train + SBD train/val minus VOC val."""
    sets = layout.voc / "ImageSets" / "Segmentation"
    voc_val = _read_ids(sets / "val.txt")
    excluded = set(voc_val)
    train_sources = (
        _read_ids(sets / "train.txt")
        + _read_ids(layout.sbd / "train.txt")
        + _read_ids(layout.sbd / "val.txt")
    )
    train = sorted(set(train_sources) - excluded)
    return sorted(set(voc_val)), train


def _build(layout: PascalLayout, progress: bool) -> dict[str, Any]:
    """Convert masks, write lists and the marker; return the counts."""
    val_ids, train_ids = _pools(layout)
    areas = _convert_all(layout, sorted(set(val_ids) | set(train_ids)), progress)
    pools = {"val": area_pairs(val_ids, areas), "train": area_pairs(train_ids, areas)}
    per_fold = _write_lists(layout, pools)
    counts: dict[str, Any] = {
        "val_images": len(val_ids),
        "train_images": len(train_ids),
        "val_pairs": len(pools["val"]),
        "train_pairs": len(pools["train"]),
        "val_pairs_per_fold": per_fold["val"],
        "train_pairs_per_fold": per_fold["train"],
        "reference_val_pairs_per_fold": list(REFERENCE_VAL_PAIRS),
        "reference_train_pairs_per_fold": list(REFERENCE_TRAIN_PAIRS),
    }
    _print_counts(counts)
    write_marker(layout.marker, counts, PREPARE_VERSION)
    return counts
