"""Downloading files safely.

:func:`download_url` streams a URL (``http(s)://`` or ``file://``) to disk with a
tqdm progress bar. Bytes go to ``<dest>.part``; an existing ``.part`` is resumed
(HTTP ``Range`` request, or a seek for ``file://``) and replaced when the server
ignores the range, when it is longer than the remote file or when the resumed
result fails the checksum. Only a complete, verified file is renamed onto ``dest``
(by :func:`canetlib.model.files.move_into_place`; the ``.part`` name is fixed rather
than random so that a later run can resume it). :func:`verify_checksum` compares
md5 / sha256 digests. Unpacking is :mod:`canetlib.data.archive`'s job.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from canetlib.model.files import PathLike, move_into_place

__all__ = [
    "ChecksumError",
    "DownloadError",
    "RemoteFile",
    "bars_enabled",
    "download_url",
    "file_digest",
    "verify_checksum",
]

CHUNK_SIZE = 1 << 20
TIMEOUT_S = 60.0


def bars_enabled(progress: bool) -> bool:
    """Whether to draw progress bars: as asked, unless ``CANETLIB_NO_PROGRESS`` is set.

    Mirrors :func:`canetlib.model.runtime.progress_enabled` without importing torch.
    """
    return progress and os.environ.get("CANETLIB_NO_PROGRESS", "") in ("", "0")


class ChecksumError(ValueError):
    """A downloaded or existing file does not have the expected digest."""


class DownloadError(OSError):
    """A transfer ended early or the server answered unusably."""


@dataclass(frozen=True)
class RemoteFile:
    """A downloadable archive: where it lives and how to check it."""

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None


# --------------------------------------------------------------------------- checksums


def file_digest(path: PathLike, algorithm: str = "md5", chunk_size: int = CHUNK_SIZE) -> str:
    """Hex digest of the file at ``path`` (read in chunks)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _digest_problem(path: PathLike, md5: str | None, sha256: str | None) -> str | None:
    """Describe how ``path`` fails the digests given, or ``None`` when it passes."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual.lower() != expected.lower():
            return f"{algorithm} is {actual}, expected {expected}"
    return None


def verify_checksum(path: PathLike, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` matches every digest given."""
    problem = _digest_problem(path, md5, sha256)
    if problem:
        raise ChecksumError(f"checksum mismatch for {Path(path).name} ({path}): {problem}")


# --------------------------------------------------------------------------- transfer


def _http_open(request: urllib.request.Request, timeout: float) -> HTTPResponse:
    """Open an HTTP(S) request (a seam for tests)."""
    response: HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
    return response


def _content_total(headers: object, offset: int, resumed: bool) -> int | None:
    """Total size of the remote file from Content-Range / Content-Length."""
    get = getattr(headers, "get", lambda _key, _default=None: None)
    content_range = get("Content-Range")
    if resumed and content_range and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1].strip()
        if tail.isdigit():
            return int(tail)
    length = get("Content-Length")
    if length is None or not str(length).strip().isdigit():
        return None
    return int(length) + (offset if resumed else 0)


def _open_stream(url: str, offset: int, timeout: float) -> tuple[BinaryIO, int | None, bool]:
    """Open ``url`` at byte ``offset``: (stream, total size or None, resumed?)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        if not path.is_file():
            raise FileNotFoundError(f"download source not found: {url}")
        size = path.stat().st_size
        stream = path.open("rb")
        resumed = 0 < offset <= size
        if resumed:
            stream.seek(offset)
        return stream, size, resumed
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme in {url!r} (use http, https or file)")
    headers = {"User-Agent": "canetlib-downloader"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = _http_open(urllib.request.Request(url, headers=headers), timeout)
    resumed = bool(offset) and getattr(response, "status", 200) == 206
    return response, _content_total(response.headers, offset, resumed), resumed


def _stream_to_part(url: str, part: Path, progress: bool, timeout: float) -> bool:
    """Append or write the remote bytes into ``part``; return whether it resumed."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        stream, total, resumed = _open_stream(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:  # 416: the range starts past the end
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
        part.unlink()
        offset = 0
        stream, total, resumed = _open_stream(url, 0, timeout)
    with stream:
        if total is not None and offset > total:  # stale .part longer than the file
            stream.close()
            part.unlink()
            return _stream_to_part(url, part, progress, timeout)
        start = offset if resumed else 0
        mode = "ab" if resumed else "wb"
        bar = tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not bars_enabled(progress),
            leave=False,
        )
        with bar, part.open(mode) as out:
            while block := stream.read(CHUNK_SIZE):
                out.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"download of {url} stopped at {size} of {total} bytes; run again to resume from {part}"
        )
    return resumed


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # holds a .part to resume, or someone else's files
            return


def download_url(
    url: str,
    dest: PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, atomic, verified); return ``dest``.

    An existing ``dest`` is trusted when it matches the checksums (or when
    none are given). A mismatching ``dest`` raises :class:`ChecksumError`;
    delete it to fetch again.
    """
    dest = Path(dest)
    if dest.exists():
        verify_checksum(dest, md5, sha256)
        return dest
    made = [f for f in (dest.parent, *dest.parent.parents) if not f.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        resumed = _stream_to_part(url, part, progress, timeout)
    except BaseException:
        _remove_empty(made)  # a transfer that never started leaves no folder behind
        raise
    problem = _digest_problem(part, md5, sha256)
    if problem and resumed:  # the old .part held bad bytes: start over once
        part.unlink()
        _stream_to_part(url, part, progress, timeout)
        problem = _digest_problem(part, md5, sha256)
    if problem:
        part.unlink()
        raise ChecksumError(
            f"checksum mismatch for downloaded file {dest.name} (from {url}): {problem}; "
            "the bad download was deleted, run again to retry"
        )
    move_into_place(part, dest)
    return dest
