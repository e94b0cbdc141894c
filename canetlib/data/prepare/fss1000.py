"""Preparing FSS-1000: the authors' archive in (checksummed), its layout checked and counted.

FSS-1000 is read where it lies (:mod:`canetlib.data.fss1000`); preparing it means
having the archive unpacked under ``root``, the split lists in ``root/splits/``, and
every class folder of the lists holding images with masks of the same size.
The authors publish the archive on a Google Drive page (:data:`OFFICIAL_PAGE`), which
is no direct download and gives no checksum, so ``download=True`` needs a direct
``url`` of ``fewshot_data.zip`` (a mirror, or ``file://`` of a copy) and the
``sha256`` you trust for it; the archive is verified before it is unpacked.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from canetlib.data.archive import ensure_dataset
from canetlib.data.download import RemoteFile, bars_enabled
from canetlib.data.fss1000 import (
    ARCHIVE_FOLDER,
    OFFICIAL_PAGE,
    REFERENCE_SPLIT,
    SPLIT_LISTS,
    FSS1000Source,
    image_root,
)
from canetlib.data.imageio import image_size
from canetlib.model.files import PathLike

#: the name of the authors' archive
ARCHIVE_NAME = "fewshot_data.zip"


def archive(url: str, sha256: str) -> RemoteFile:
    """The FSS-1000 archive at ``url`` with the digest it must have."""
    return RemoteFile(url=url, filename=ARCHIVE_NAME, sha256=sha256)


def split_files(splits: PathLike) -> list[Path]:
    """The split lists (train, val, test) in the folder ``splits``; a missing one is
    refused naming ``--splits``, before anything is written."""
    source = Path(splits)
    files = []
    for names in SPLIT_LISTS.values():
        found = [source / n for n in names if (source / n).is_file()]
        if not found:
            raise FileNotFoundError(f"--splits {source}: no {' or '.join(names)} there")
        files.append(found[0])
    return files


def copy_split_lists(splits: PathLike, root: Path) -> Path:
    """Copy ``splits/{trn,val,test}.txt`` into ``root/splits`` (an identical file is kept,
    a different one is refused, never replaced)."""
    files, target = split_files(splits), root / "splits"
    for found in files:  # every refusal before the first copy
        dest = target / found.name
        if dest.exists() and dest.read_bytes() != found.read_bytes():
            raise ValueError(f"{dest} exists and differs from {found}; remove it to replace it")
    target.mkdir(parents=True, exist_ok=True)
    for found in files:
        if not (target / found.name).exists():
            shutil.copyfile(found, target / found.name)
    return target


def _size_problems(source: FSS1000Source, progress: bool) -> list[str]:
    """Image ids whose mask is not the size of the image (headers only)."""
    bad = []
    ids = source.image_ids()
    for image_id in tqdm(ids, desc="check FSS-1000", disable=not bars_enabled(progress),
                         leave=False):
        base = source.images / image_id
        if image_size(base.with_suffix(".jpg")) != image_size(base.with_suffix(".png")):
            bad.append(image_id)
    return bad


def prepare_fss1000(root: PathLike, download: bool = False, progress: bool = True, *,
                    url: str | None = None, sha256: str | None = None,
                    splits: PathLike | None = None) -> dict[str, Any]:
    """Fetch (optionally), check and count FSS-1000 under ``root``; return the counts.

    ``download=True`` needs ``url`` and ``sha256`` (see the module docstring) and unpacks
    the verified archive into ``root`` (``root/fewshot_data/<class>/``); ``splits``
    is a folder with the split lists to copy into ``root/splits``. Raises on a missing
    split list, a class folder the lists name but the tree lacks, a class with fewer
    than 2 images, or a mask whose size is not its image's.
    """
    root = Path(root)
    if splits is not None:
        split_files(splits)  # a bad --splits fails before any download
    if download:
        if not url or not sha256:
            raise ValueError(f"prepare fss1000 --download needs --url (a direct link to "
                             f"{ARCHIVE_NAME}) and --sha256 (its digest): the authors publish "
                             f"it on a Google Drive page ({OFFICIAL_PAGE}) with no checksum")
        if len(sha256) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in sha256):
            raise ValueError(f"--sha256 must be 64 hex digits, got {sha256!r}")
        ensure_dataset(archive(url, sha256), root / ARCHIVE_FOLDER, root, progress=progress)
    elif url or sha256:
        raise ValueError("--url and --sha256 are for --download; add --download or drop them")
    if splits is not None:
        copy_split_lists(splits, root)
    source = FSS1000Source(root)
    counts: dict[str, Any] = {"root": str(image_root(root)), **source.counts(),
                              "reference_classes": dict(REFERENCE_SPLIT)}
    few = [n for n, c in _images_per_class(source).items() if c < 2]
    if few:
        raise ValueError(f"{image_root(root)}: {len(few)} class(es) have fewer than 2 images "
                         f"with masks (a 1-shot episode needs 2), e.g. {few[0]}")
    bad = _size_problems(source, progress)
    if bad:
        raise ValueError(f"{image_root(root)}: {len(bad)} mask(s) differ in size from their "
                         f"image, e.g. {bad[0]}.png")
    differ = [p for p, n in REFERENCE_SPLIT.items() if counts[f"{p}_classes"] != n]
    counts["matches_reference_split"] = not differ
    return counts


def _images_per_class(source: FSS1000Source) -> dict[str, int]:
    out = {n: 0 for n in source.class_names if n in source.split.train + source.split.val
           + source.split.test}
    for image_id in source.image_ids():
        out[image_id.split("/", 1)[0]] += 1
    return out


__all__ = ["ARCHIVE_NAME", "archive", "copy_split_lists", "prepare_fss1000"]
