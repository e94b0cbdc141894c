"""The package's one atomic writer, and the checks that go before writing.

Every file canetlib writes for keeps (checkpoints, prepared masks and pair lists,
JSON results, cache files, downloaded archives) is written under a temporary
name beside its final path and then renamed onto it by :func:`move_into_place`,
so an interrupted run never leaves a half-written file under the final name.
:func:`atomic_path` wraps that in a context manager and :func:`write_atomic`
writes bytes or text through it; :func:`check_writable` (and :func:`probe_output`,
which also tries the folder and a file in it) lets a command refuse an unwritable
output before it starts long work. A write that fails on the way (a full disk,
:func:`writing`) raises one ``OSError`` naming the file. Only the standard library is
used, so any module can import this one cheaply.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "NO_SPACE",
    "PathLike",
    "atomic_path",
    "check_writable",
    "move_into_place",
    "probe_output",
    "temp_beside",
    "write_atomic",
    "write_failure",
    "writing",
]

PathLike = str | os.PathLike[str]

#: the errors of a write that a full disk or quota causes, and how a message names them
NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "the file is too large for this file system"}
#: what torch's zip writer says when a write fails (a full disk, mostly)
_TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "file write failed")


def write_failure(err: BaseException, path: Path, note: str = "") -> OSError | None:
    """One ``OSError`` naming ``path`` for a write that failed for lack of space (also
    torch's ``[enforce fail at inline_container.cc]``), ``note`` added; None for other errors."""
    if isinstance(err, OSError) and err.errno in NO_SPACE:
        cause, code = NO_SPACE[err.errno], err.errno
    elif isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_WRITE_FAILED):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        cause, code = f"the write failed, most likely no space left on device ({first})", \
            errno.ENOSPC
    else:
        return None
    named = OSError(f"cannot write {path}: {cause}" + (f"; {note}" if note else ""))
    named.errno = code  # str() stays the message above
    return named


@contextmanager
def writing(path: PathLike, note: str = "") -> Iterator[None]:
    """Turn a write of ``path`` that fails for lack of space into one ``OSError`` naming
    ``path`` (:func:`write_failure`); other errors pass unchanged."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        named = write_failure(err, Path(path), note)
        if named is None:
            raise
        raise named from err


def temp_beside(final: Path, suffix: str = ".part") -> Path:
    """Create an empty, uniquely named hidden file beside ``final`` and return its path.

    Unlike :func:`tempfile.mkstemp` (always mode 0600) the file gets the usual
    permissions, ``0666`` less the umask, so that the renamed output does too.
    """
    for _ in range(100):
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {final}")


def check_writable(path: PathLike, folder: bool = False) -> Path:
    """Raise an ``OSError`` naming ``path`` unless it can be written now; create nothing.

    ``path`` is a file to (over)write, or with ``folder=True`` a folder to
    write files into. Missing folders count as writable when their nearest
    existing parent is a writable folder. Call it before long work so that
    an unwritable output fails at once instead of after the work.
    """
    p = Path(path)
    if p.is_dir() and not folder:
        raise IsADirectoryError(f"cannot write {p}: it is a folder; name a file")
    probe = p if folder else p.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"cannot write {p}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {p}: no write permission in {probe}")
    return p


def _missing_folders(folder: Path) -> list[Path]:
    """The folders from ``folder`` up that do not exist yet, deepest first."""
    missing: list[Path] = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def probe_output(path: PathLike) -> Path:
    """:func:`check_writable`, then proof: create ``path``'s missing folders and a file
    in them, and remove them again. An output that cannot be written fails before the
    work, also for root and on file systems such as ``/proc``; ``OSError`` names ``path``."""
    p = check_writable(path)
    missing = _missing_folders(p.parent)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(f"cannot write {p}: cannot create the folder {p.parent} "
                        f"({err.strerror or err})") from err
    try:
        temp_beside(p, ".probe").unlink()
    except OSError as err:
        raise type(err)(f"cannot write {p}: cannot create a file in {p.parent} "
                        f"({err.strerror or err})") from err
    finally:
        for folder in missing:
            try:
                folder.rmdir()
            except FileNotFoundError:  # never made
                continue
            except OSError:  # filled by someone else meanwhile: keep it and its parents
                break
    return p


def move_into_place(tmp: PathLike, final: PathLike) -> Path:
    """Rename the finished temporary file ``tmp`` onto ``final`` in one step; return ``final``.

    ``tmp`` must be in ``final``'s folder (same file system), so that readers
    see either the old file or the complete new one, never a part of it. This
    is the only rename of a finished output in canetlib.
    """
    os.replace(tmp, final)
    return Path(final)


@contextmanager
def atomic_path(final: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success.

    The temporary name ends in ``.part``; on error it is removed and ``final``
    is left untouched (a full disk: one ``OSError`` naming ``final``, :func:`writing`).
    The result has the usual permissions (umask respected).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    kept = f"the previous {final.name} is unchanged" if final.exists() else \
        "nothing was written"
    with writing(final, kept):
        tmp = temp_beside(final)
    try:
        with writing(final, kept):
            yield tmp
            move_into_place(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; return the path.

    Goes through :func:`atomic_path`: missing folders are created, the file gets the
    usual permissions (``0666`` less the umask), and on error ``path`` is untouched.
    """
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)
