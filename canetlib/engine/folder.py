"""A run's folder: the overwrite/resume rules, ``last.pt`` and the CSV log.

* :func:`open_run_folder` refuses a folder that holds another run unless the
  caller asked to ``resume`` it or to ``overwrite`` it (which removes exactly
  the run's files, :data:`RUN_FILES` and the recipe's extras); rank 0 decides
  and the other processes follow its decision.
* :func:`save_checkpoint` writes through :func:`canetlib.checkpoint.save_atomic`
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

from canetlib import checkpoint as ckpt_io
from canetlib.data.imageio import atomic_path, check_writable
from canetlib.engine.distributed import ONE_PROCESS, DistInfo

#: files a run writes into its output folder (``--overwrite`` removes exactly these)
RUN_FILES = ("last.pt", "model.pt", "log.csv", "val.csv")
#: the columns of ``log.csv``
LOG_HEADER = ("step", "epoch", "loss", "lr", "seconds")
#: the resumable checkpoint inside a run folder
LAST = "last.pt"


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
        return None
    if present and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(present)}); pass --resume to "
                         "continue it or --overwrite to replace it")
    for name in present:
        (out / name).unlink()
    return None


def open_run_folder(out: Path, resume: bool, overwrite: bool, *, extra: Sequence[str] = (),
                    info: DistInfo = ONE_PROCESS, broadcast: bool = False) -> Path | None:
    """:func:`prepare_out` on rank 0 after checking that ``out`` can be written;
    with ``broadcast`` (a process group is running) every rank gets its answer."""
    resume_from: Path | None = None
    if info.main:
        check_writable(out, folder=True)
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
    (names the differing fields). ``cfg`` is a :mod:`canetlib.configs` config."""
    if state.get("kind") != kind or config_key not in state:
        raise ValueError(f"{path}: {refusal}")
    try:
        saved = type(cfg).from_dict(state[config_key])
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


__all__ = ["LAST", "LOG_HEADER", "RUN_FILES", "append_row", "check_max_steps",
           "check_resumable", "iter_log", "load_resumable", "open_log", "open_run_folder",
           "prepare_out", "save_checkpoint", "truncate_log"]
