"""Unpacking dataset archives safely, and putting a benchmark's archive in place.

:func:`extract_archive` unpacks tar (any compression) and zip archives once (a
marker file records completion) and refuses members that would land outside the
target folder (absolute paths, ``..`` components, links pointing outside, device
files). :func:`ensure_dataset` downloads (:mod:`canetlib.data.download`) and
unpacks a benchmark's archive unless its data is already there.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from canetlib.data.download import RemoteFile, bars_enabled, download_url
from canetlib.model.files import PathLike

__all__ = [
    "UnsafeArchiveError",
    "ensure_dataset",
    "extract_archive",
    "extraction_interrupted",
    "find_archive",
    "is_extracted",
    "unpack_hint",
]


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the extraction folder."""


def _safe_target(dest: Path, name: str, archive: Path) -> Path:
    """Resolve member ``name`` under ``dest`` or raise :class:`UnsafeArchiveError`."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and pure.parts[0].endswith(":")) or ".." in pure.parts:
        raise UnsafeArchiveError(f"refusing to extract {archive}: unsafe member path {name!r}")
    target = (dest / pure).resolve()
    if not target.is_relative_to(dest):
        raise UnsafeArchiveError(f"refusing to extract {archive}: {name!r} leaves {dest}")
    return target


def _check_tar_member(member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    target = _safe_target(dest, member.name, archive)
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(f"refusing to extract {archive}: special file {member.name!r}")
    if member.issym() or member.islnk():
        base = target.parent if member.issym() else dest
        link = PurePosixPath(member.linkname)
        resolved = (base / link).resolve()
        if link.is_absolute() or not resolved.is_relative_to(dest):
            raise UnsafeArchiveError(
                f"refusing to extract {archive}: link {member.name!r} -> {member.linkname!r} "
                f"points outside {dest}"
            )


def _extract_tar(archive: Path, dest: Path, progress: bool) -> None:
    supports_filter = hasattr(tarfile, "data_filter")
    with (
        tarfile.open(archive, "r:*") as tar,
        tqdm(
            desc=f"extract {archive.name}",
            unit=" files",
            disable=not bars_enabled(progress),
            leave=False,
        ) as bar,
    ):
        for member in tar:
            _check_tar_member(member, dest, archive)
            if supports_filter:
                tar.extract(member, dest, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extract(member, dest)
            bar.update(1)


def _extract_zip(archive: Path, dest: Path, progress: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check everything before writing anything
            _safe_target(dest, info.filename, archive)
        for info in tqdm(
            infos,
            desc=f"extract {archive.name}",
            unit=" files",
            disable=not bars_enabled(progress),
            leave=False,
        ):
            zf.extract(info, dest)


def _markers(archive: Path, dest: Path) -> tuple[Path, Path]:
    return dest / f".extracting-{archive.name}", dest / f".extracted-{archive.name}"


def is_extracted(archive_name: str, dest: PathLike) -> bool:
    """Whether :func:`extract_archive` finished unpacking ``archive_name`` into ``dest``."""
    return _markers(Path(archive_name), Path(dest))[1].exists()


def extraction_interrupted(archive_name: str, dest: PathLike) -> bool:
    """Whether an extraction of ``archive_name`` into ``dest`` started but never finished."""
    return _markers(Path(archive_name), Path(dest))[0].exists()


def extract_archive(archive: PathLike, dest: PathLike, *, progress: bool = True) -> Path:
    """Unpack a tar/zip ``archive`` into ``dest`` once; return ``dest``.

    A marker file ``dest/.extracted-<archive name>`` records completion, so a
    second call returns at once; an interrupted extraction is redone.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    running, done = _markers(archive, dest)
    if done.exists():
        return dest
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    running.touch()
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, progress)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, dest, progress)
    else:
        raise ValueError(f"{archive} is neither a tar nor a zip archive")
    done.write_text(f"{archive.name}\n")
    running.unlink()
    return dest


def find_archive(remote: RemoteFile, root: PathLike) -> Path | None:
    """``remote``'s archive where :func:`ensure_dataset` takes it from: ``root/downloads``
    (where it downloads to) or ``root`` itself (where users tend to put it); else None."""
    root = Path(root)
    for folder in (root / "downloads", root):
        if (folder / remote.filename).is_file():
            return folder / remote.filename
    return None


def unpack_hint(remote: RemoteFile, root: PathLike, command: str) -> str:
    """``; ARCHIVE is there but not unpacked: ...`` for a message about data missing from
    ``root`` when ``remote``'s archive lies in ``root`` or ``root/downloads``, else ``""``.
    ``command`` is the prepare command without ``--download``."""
    found = find_archive(remote, root)
    if found is None:
        return ""
    return (f"; the archive {found} is there but not unpacked: run {command} --download "
            "to check and unpack it (an archive already in the root folder or its downloads/ "
            "is used as it is, nothing is downloaded; in Python: download=True)")


def ensure_dataset(
    remote: RemoteFile,
    expected: PathLike,
    root: PathLike,
    *,
    progress: bool = True,
) -> Path:
    """Fetch ``remote`` into ``root/downloads`` and unpack it into ``root``, unless present.

    ``expected`` is a folder the archive creates; when it already exists (and
    no extraction of this archive was interrupted) the data counts as present,
    whether we unpacked it or the user did. An archive already in ``root/downloads``
    or ``root`` (:func:`find_archive`) is checked and unpacked instead of downloaded.
    """
    expected, root = Path(expected), Path(root)
    if expected.is_dir() and not extraction_interrupted(remote.filename, root):
        return expected
    if not is_extracted(remote.filename, root):
        found = find_archive(remote, root)
        folder = root / "downloads" if found is None else found.parent
        archive = download_url(remote.url, folder / remote.filename, md5=remote.md5,
                               sha256=remote.sha256, progress=progress)
        extract_archive(archive, root, progress=progress)
    if not expected.is_dir():
        raise FileNotFoundError(
            f"{remote.filename} was unpacked into {root} but {expected} is missing"
        )
    return expected
