"""The loop driver: what happens around every optimisation step of every recipe.

A recipe owns its loop (``for batch in loader: ...``), its step and its checkpoint;
after each step it calls :meth:`Run.step_done`, which counts the step and its seconds,
writes the ``log.csv`` row, moves the progress bar and says whether ``last.pt`` is due
(every ``save_every`` steps and at the last one); the recipe then hands its checkpoint
to :meth:`Run.save`. :func:`check_loss` (the NaN guard) stops a run before a
non-finite loss reaches the weights. A write that fails for lack of space stops the
run with one line naming the file, the step and the checkpoint to resume from
(:meth:`Run.writing`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from typing_extensions import Self

from canetlib.model.files import writing
from canetlib.model.runtime import progress_enabled
from canetlib.training.engine.distributed import ONE_PROCESS, DistInfo
from canetlib.training.engine.run_folder import LAST, append_row, open_log, save_checkpoint

#: what the NaN guard suggests by default
LR_HINT = "lower the learning rate (--set lr=...)"


def check_loss(value: float, step: int, *, what: str = "training", epoch: int | None = None,
               hint: str = LR_HINT) -> float:
    """``value`` if finite, else a ValueError naming the step (1-based, as in ``log.csv``)."""
    if not math.isfinite(value):
        where = "" if epoch is None else f" (epoch {epoch})"
        raise ValueError(f"{what} loss is {value} at step {step}{where}; {hint}")
    return value


def set_lr(optim: torch.optim.Optimizer, lr: float) -> float:
    """Give every parameter group the learning rate ``lr``; return it."""
    for group in optim.param_groups:
        group["lr"] = lr
    return lr


def progress_bar(info: DistInfo, requested: bool, **kw: Any) -> Any:
    """A tqdm bar on rank 0 when progress is enabled (:func:`canetlib.model.runtime.progress_enabled`),
    else None."""
    if not (info.main and progress_enabled(requested)):
        return None
    from tqdm.auto import tqdm

    return tqdm(**kw)


class Run:
    """Step count, seconds, ``log.csv`` and progress bar of one run, and when ``last.pt`` is due.

    Args:
        out: the run folder (:func:`canetlib.training.engine.open_run_folder`).
        end: the global step to stop at; ``last.pt`` is due there in any case.
        save_every: ``last.pt`` is due every this many steps too.
        state: the checkpoint the run resumes from (its ``step`` and ``seconds``
            are where the count starts; it needs no rewrite), None for a new run.
        info: this process; only rank 0 writes files and shows the bar.
        progress, desc: the progress bar.

    The recipe builds the checkpoint and hands it to :meth:`save` whenever
    :meth:`step_done` or :meth:`finish` says it is due. Use it as a context manager
    (the bar is closed however the loop ends).
    """

    def __init__(self, out: Path, *, end: int, save_every: int,
                 state: Mapping[str, Any] | None = None, info: DistInfo = ONE_PROCESS,
                 progress: bool = True, desc: str = "") -> None:
        self.out, self.info = Path(out), info
        self.end, self.save_every = int(end), int(save_every)
        self.step = int(state["step"]) if state is not None else 0
        self.seconds = float(state.get("seconds", 0.0)) if state is not None else 0.0
        self.losses: list[float] = []  # of the steps taken by this call
        self.last_saved = self.step if state is not None else -1
        self.log_path = self.out / "log.csv"
        if info.main:
            with self.writing(self.log_path):
                open_log(self.log_path, self.step)
        self.bar = progress_bar(info, progress, total=self.end, initial=self.step, desc=desc)
        self._tick = time.perf_counter()

    @property
    def done(self) -> bool:
        """The run reached ``end``."""
        return self.step >= self.end

    def restart_clock(self) -> None:
        """Start timing the next step now (after loader set-up or validation)."""
        self._tick = time.perf_counter()

    def step_done(self, loss: float, lr: float, epoch: int) -> bool:
        """Count one finished step: seconds, log row and bar. True when this process
        writes ``last.pt`` now (rank 0; every ``save_every`` steps and at ``end``)."""
        self.step += 1
        now = time.perf_counter()
        self.seconds += now - self._tick  # data loading included
        self._tick = now
        self.losses.append(loss)
        if self.info.main:
            with self.writing(self.log_path):
                append_row(self.log_path, [self.step, epoch, f"{loss:.6f}", f"{lr:.6g}",
                                           f"{self.seconds:.3f}"])
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", epoch=epoch)
        return self.info.main and (self.step % self.save_every == 0 or self.step == self.end)

    def finish(self) -> bool:
        """Close the bar. True when this process writes ``last.pt`` now (rank 0, where it
        does not hold this step yet)."""
        self.close()
        return self.info.main and self.last_saved != self.step

    def save(self, payload: Mapping[str, Any]) -> None:
        """Write ``payload``, the checkpoint of this step, to ``last.pt`` (atomically)."""
        with self.writing(self.out / LAST):
            save_checkpoint(payload, self.out / LAST)
        self.last_saved = self.step

    @contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """A write of ``path`` that fails for lack of space stops the run: one ``OSError``
        naming ``path``, the step, and the checkpoint to resume from."""
        last = self.out / LAST
        if self.last_saved >= 0 and last.is_file():
            after = (f"{last} of step {self.last_saved} is intact; free space, then continue "
                     "with --resume")
        else:
            after = "no checkpoint was saved yet; free space, then start again with --overwrite"
        with writing(path, f"the run stopped at step {self.step}; {after}"):
            yield

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["LR_HINT", "Run", "check_loss", "progress_bar", "set_lr"]
