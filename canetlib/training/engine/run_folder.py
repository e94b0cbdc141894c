"""A run's folder: the overwrite/resume rules, ``last.pt`` and the CSV log.

* :func:`open_run_folder` refuses a folder that holds another run unless the
  caller asked to ``resume`` it or to ``overwrite`` it (which removes exactly
  the run's files, :data:`RUN_FILES` and the recipe's extras); rank 0 decides
  and the other processes follow its decision. With ``lock`` (training and
  pretraining) it also locks the folder (:func:`lock_run_folder`), so that a
  second run on it is refused while the first one runs.
* :func:`save_checkpoint` writes through :func:`canetlib.model.checkpoint.save_atomic`
  (temporary file beside the target, then one rename), so a run killed while
  saving keeps its previous checkpoint; :func:`load_resumable` reads it back
  with ``weights_only=True`` and refuses a checkpoint of another kind or config.
* ``log.csv`` has one row per step (:data:`LOG_HEADER`); on resume the rows a
  killed run wrote after its last checkpoint are dropped (:func:`open_log`), so
  a resumed log reads like an unbroken one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: run folders are not locked
    fcntl = None  # type: ignore[assignment]

from canetlib.model import checkpoint as ckpt_io
from canetlib.model.files import atomic_path, check_writable
from canetlib.training.engine.distributed import ONE_PROCESS, DistInfo
from canetlib.training.settings import RetiredOptionError

#: files a run writes into its output folder (``--overwrite`` removes exactly these)
RUN_FILES = ("last.pt", "model.pt", "log.csv", "val.csv")
#: the columns of ``log.csv``
LOG_HEADER = ("step", "epoch", "loss", "lr", "seconds")
#: the resumable checkpoint inside a run folder
LAST = "last.pt"
#: the lock file a running run holds in its folder (its process id inside)
LOCK = "run.lock"
#: run folders this process has locked (resolved path -> lock file descriptor)
_HELD: dict[Path, int] = {}


# --------------------------------------------------------------------------- folder rules
def prepare_out(out: Path, resume: bool, overwrite: bool,
                extra: Sequence[str] = ()) -> Path | None:
    """Check the output folder; return the checkpoint to resume from (or None).

    Refuses a folder holding another run unless ``resume`` or ``overwrite``;
    ``overwrite`` removes the run's files (:data:`RUN_FILES` and ``extra``) only.
    """
    if resume and overwrite:
        raise ValueError("choose one of --resume and --overwrite")
    present = [name for name in (*RUN_FILES, *extra) if (out / name).exists()]
    last = out / LAST
    if resume:
        if last.is_file():
            return last
        if present:
            raise ValueError(f"{out} holds {present} but no last.pt to resume from; "
                             "use --overwrite to start again")
        raise ValueError(f"--resume: there is no {last} to resume from (no run was saved in "
                         f"{out}); drop --resume to start a new run there")
    if present and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(present)}); pass --resume to "
                         "continue it or --overwrite to replace it")
    for name in present:
        (out / name).unlink()
    return None


def _holder(fd: int) -> str:
    """Who holds the lock file open as ``fd``: ``process PID``, or ``another process``."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return f"process {text}" if text.isdigit() else "another process"


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing run removes it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _take_lock(out: Path, path: Path) -> int | None:
    """The descriptor of ``path``, locked by this process; None where locking is not
    supported; ``ValueError`` naming the holder when another run holds it."""
    assert fcntl is not None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ValueError(f"{out} is in use by another run ({holder} holds {path}); wait "
                             "for it to end or choose another --out") from None
        except OSError:  # a file system without locks: the run goes on unlocked
            os.close(fd)
            return None
        if _is_current(fd, path):
            return fd
        os.close(fd)


def lock_run_folder(out: Path) -> None:
    """Hold an exclusive lock on the run folder ``out`` until :func:`release_run_folder`.

    The lock is ``fcntl.flock`` on :data:`LOCK` inside ``out`` (the holder's process
    id written in it); the OS drops it when the process ends, so a killed run leaves
    no stale lock. Another process's lock is a ``ValueError`` naming it. Where fcntl
    is missing (Windows) nothing is locked.
    """
    key = out.resolve()
    if fcntl is None:
        return
    if key in _HELD:
        raise ValueError(f"{out} is in use by another run (process {os.getpid()}, this one, "
                         f"holds {out / LOCK}); wait for it to end or choose another --out")
    fd = _take_lock(out, out / LOCK)
    if fd is None:
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    _HELD[key] = fd


def release_run_folder(out: Path) -> None:
    """Give up the lock :func:`lock_run_folder` took on ``out`` and remove its file."""
    fd = _HELD.pop(out.resolve(), None)
    if fd is None:
        return
    try:
        (out / LOCK).unlink(missing_ok=True)  # while still locked: see _is_current
    finally:
        os.close(fd)


def _prepare_locked(out: Path, resume: bool, overwrite: bool,
                    extra: Sequence[str]) -> Path | None:
    """:func:`prepare_out` in ``out`` locked by :func:`lock_run_folder` (released on error)."""
    out.mkdir(parents=True, exist_ok=True)
    lock_run_folder(out)
    try:
        return prepare_out(out, resume, overwrite, extra)
    except BaseException:
        release_run_folder(out)
        raise


def open_run_folder(out: Path, resume: bool, overwrite: bool, *, extra: Sequence[str] = (),
                    info: DistInfo = ONE_PROCESS, broadcast: bool = False,
                    lock: bool = False) -> Path | None:
    """:func:`prepare_out` on rank 0 after checking that ``out`` can be written; with
    ``lock``, under the run's lock (:func:`lock_run_folder`), which the caller gives up
    with :func:`release_run_folder` when the run ends; with ``broadcast`` (a process
    group is running) every rank gets its answer."""
    resume_from: Path | None = None
    if info.main:
        check_writable(out, folder=True)
        if resume and not (out / LAST).is_file():
            prepare_out(out, resume, overwrite, extra)  # refuses before the folder is made
        if lock:
            resume_from = _prepare_locked(out, resume, overwrite, extra)
        else:
            resume_from = prepare_out(out, resume, overwrite, extra)
            out.mkdir(parents=True, exist_ok=True)
    if broadcast:
        import torch.distributed as dist

        flag = [str(resume_from) if resume_from else ""]
        dist.broadcast_object_list(flag, src=0)
        resume_from = Path(flag[0]) if flag[0] else None
    return resume_from


def check_max_steps(max_steps: int | None, done: int = 0, path: Path | None = None) -> None:
    """``max_steps`` must be >= 1 and, when resuming from ``path`` at step ``done``,
    not below ``done`` (a resumed run never goes back or overwrites a later checkpoint)."""
    if max_steps is None:
        return
    if max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    if max_steps < done:
        raise ValueError(f"--max-steps {max_steps} is below step {done}, where {path} already "
                         "is; nothing was trained or written. Give --max-steps above "
                         f"{done} (or leave it out) to continue the run")


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a checkpoint atomically: a failed or killed write leaves the old file."""
    return ckpt_io.save_atomic(payload, path)


def check_resumable(state: Mapping[str, Any], cfg: Any, path: Path, *, kind: str,
                    config_key: str, what: str, refusal: str) -> None:
    """Refuse a checkpoint that is not of ``kind`` or was written by another config
    (names the differing fields). ``cfg`` is a :mod:`canetlib.training.configs` config."""
    if state.get("kind") != kind or config_key not in state:
        raise ValueError(f"{path}: {refusal}")
    try:
        saved = type(cfg).from_dict(state[config_key], source=str(path))
    except RetiredOptionError:
        raise
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its {what} config is not readable ({err})") from err
    diffs = cfg.mismatch(saved)
    if diffs:
        raise ValueError(f"{path} was written by another configuration; cannot resume: "
                         + "; ".join(diffs))


def load_resumable(path: Path | None, cfg: Any, max_steps: int | None, *, kind: str,
                   config_key: str, what: str, refusal: str) -> dict[str, Any] | None:
    """The checkpoint to resume from (``weights_only`` load on the CPU), checked by
    :func:`check_resumable` and :func:`check_max_steps`; None to start afresh."""
    if path is None:
        return None
    state = ckpt_io.load(path, map_location="cpu")
    check_resumable(state, cfg, path, kind=kind, config_key=config_key, what=what,
                    refusal=refusal)
    check_max_steps(max_steps, int(state["step"]), path)
    return state


# --------------------------------------------------------------------------- CSV log
def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step`` (written by a killed run after its last checkpoint)."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step] if rows else []
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows(keep)


def open_log(path: Path, step: int, header: Sequence[str] = LOG_HEADER) -> None:
    """Make ``path`` a log of steps ``1..step``: truncated on resume, a header if new."""
    truncate_log(path, step)
    if not path.is_file():
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(header)


def append_row(path: Path, row: Sequence[Any], header: Sequence[str] | None = None) -> None:
    """Append one CSV row; ``header`` goes first when the file is new."""
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new and header is not None:
            w.writerow(header)
        w.writerow(row)


def iter_log(path: str | os.PathLike[str]) -> Iterator[dict[str, float]]:
    """Rows of a run's ``log.csv`` as dicts of numbers."""
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            yield {k: float(v) for k, v in row.items()}


__all__ = ["LAST", "LOCK", "LOG_HEADER", "RUN_FILES", "append_row", "check_max_steps",
           "check_resumable", "iter_log", "load_resumable", "lock_run_folder", "open_log",
           "open_run_folder", "prepare_out", "release_run_folder", "save_checkpoint",
           "truncate_log"]
