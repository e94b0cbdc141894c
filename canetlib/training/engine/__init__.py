"""The run engine: what every training loop of canetlib needs, written once.

:func:`canetlib.training.recipe.train` (CANet, the paper's recipe) and
:func:`canetlib.training.pretrain.pretrain` (the offline backbone) are short recipes on
top of this package. Its design makes a run reproducible and resumable: a run
killed at any moment and resumed with ``--resume`` ends with the same tensors
as an unbroken run (on CPU; on the same hardware in general).

* **Data are a function of** ``(seed, epoch, index)``. The order in which an
  epoch visits its samples is a permutation seeded by ``(seed, epoch)``
  (:func:`canetlib.training.episodes.epoch_order`), and the sample at ``index`` is
  rendered from ``(seed, epoch, index)`` alone. Nothing depends on worker
  state or on where the previous process stopped, so a resumed run simply
  skips the batches already taken.
* **Randomness inside the model** (``Dropout2d``) is reseeded before every
  step from ``(seed, step, rank)`` (:func:`reseed_step`); the global torch,
  numpy and python generators are still saved in every checkpoint
  (:func:`rng_state`) for anything else that draws from them.
* **Checkpoints are atomic**: ``last.pt`` is written to a temporary file beside
  it and renamed in one step (:func:`save_checkpoint`), so a kill during a save
  leaves the previous checkpoint intact. It holds the step, the seconds spent,
  the model, optimizer and RNG states and the config, and is read with
  ``weights_only=True`` (:func:`load_resumable`), refusing another config.
* **Exact resume**: the recipe restores everything from ``last.pt``, the log
  loses the rows written after that checkpoint (:func:`open_log`), and the loop
  continues at the saved step. The run folder rules (:func:`open_run_folder`)
  refuse to mix two runs in one folder.
* **Processes**: under torchrun each rank takes a disjoint share of every
  global batch (:mod:`canetlib.training.engine.distributed`); rank 0 alone writes files.

:class:`Run` is the loop driver: after each step the recipe calls
:meth:`Run.step_done`, which logs, moves the progress bar and says when the recipe's
checkpoint is due (:meth:`Run.save` writes it); :func:`check_loss` is the NaN guard.
Nothing here calls back into a recipe.
"""

from canetlib.training.engine.distributed import (
    ONE_PROCESS,
    DistInfo,
    Processes,
    all_gather,
    dist_info,
    end_processes,
    init_distributed,
    mean_over_ranks,
    needs_group,
    start_processes,
)
from canetlib.training.engine.loop import LR_HINT, Run, check_loss, progress_bar, set_lr
from canetlib.training.engine.run_folder import (
    LAST,
    LOG_HEADER,
    RUN_FILES,
    append_row,
    check_max_steps,
    check_resumable,
    iter_log,
    load_resumable,
    lock_run_folder,
    open_log,
    open_run_folder,
    prepare_out,
    release_run_folder,
    save_checkpoint,
    truncate_log,
)
from canetlib.training.engine.seeding import mix_seed, reseed_step, rng_state, set_rng_state

__all__ = [
    "LAST",
    "LOG_HEADER",
    "LR_HINT",
    "ONE_PROCESS",
    "RUN_FILES",
    "DistInfo",
    "Processes",
    "Run",
    "all_gather",
    "append_row",
    "check_loss",
    "check_max_steps",
    "check_resumable",
    "dist_info",
    "end_processes",
    "init_distributed",
    "iter_log",
    "load_resumable",
    "lock_run_folder",
    "mean_over_ranks",
    "mix_seed",
    "needs_group",
    "open_log",
    "open_run_folder",
    "prepare_out",
    "progress_bar",
    "release_run_folder",
    "reseed_step",
    "rng_state",
    "save_checkpoint",
    "set_lr",
    "set_rng_state",
    "start_processes",
    "truncate_log",
]
