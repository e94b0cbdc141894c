"""The CANet trainer: the paper's recipe on top of :mod:`canetlib.engine`.

Paper section 5.1 ("Implementation details") and section 4.2: SGD (lr 0.0025,
momentum 0.9, weight decay 5e-4), batches of episodes, mean pixel
cross-entropy over the bilinearly upsampled logits with 255 ignored, and the
IOM input of each training sample equal to *that sample's prediction from the
previous epoch*, replaced by the empty mask with probability ``pr = 0.7``
(:mod:`canetlib.history`). The defaults live in :mod:`canetlib.configs`.

What makes a run reproducible and resumable is the engine's
(:mod:`canetlib.engine`): episodes are a function of ``(seed, epoch, index)``
(:mod:`canetlib.data.training`), dropout is reseeded every step, ``DIR/last.pt``
is written atomically and holds everything a resumed run needs, here the
history memory and the loss scaler too. Under torchrun each process takes a
disjoint share of every global batch; the history memory is all-gathered so
every process remembers every prediction. ``DIR/model.pt`` is the final model
(fp16 payload of :func:`canetlib.checkpoint.model_payload` plus the
``train_config``).

**No model selection on test episodes**: the final checkpoint is the result.
Optional validation (``validate_every``) uses episodes of the *training*
classes drawn from held-out training images (a seeded hash of the image id
sends a fraction ``val_fraction`` of the training pool to validation; those
images are then excluded from training). With ``val_by="classes"`` a seeded
``val_classes`` of the fold's training classes are held out instead: the model
trains on the others and is validated on classes it never saw, which is what
the benchmark measures, still without a test class or a test image.

The run's starting point (model, optimizer, lr schedule) is :mod:`canetlib.train_init`'s.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from canetlib import checkpoint as ckpt_io
from canetlib.configs import TrainConfig
from canetlib.data.source import SegmentationSource
from canetlib.data.training import (
    EpochEpisodes,
    build_train_dataset,
    build_val_dataset,
    collate,
    run_batches,
)
from canetlib.engine import (
    LR_HINT,
    DistInfo,
    Processes,
    Run,
    all_gather,
    append_row,
    check_loss,
    check_max_steps,
    dist_info,
    end_processes,
    iter_log,
    load_resumable,
    mean_over_ranks,
    open_run_folder,
    release_run_folder,
    reseed_step,
    rng_state,
    set_lr,
    set_rng_state,
    start_processes,
)
from canetlib.history import HistoryMemory, keep_history
from canetlib.inputs import IGNORE_INDEX
from canetlib.model import CANet
from canetlib.runtime import amp_dtype, autocast
from canetlib.train_init import build_model, make_optimizer, poly_lr


# --------------------------------------------------------------------------- loss
def pixel_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy over the non-ignored pixels, logits upsampled to the labels.

    Paper section 5.1: "the loss is the mean cross-entropy over all pixels";
    255 (object borders) is ignored; a batch with no labelled pixel gives 0.
    """
    up = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear",
                       align_corners=True)
    total = F.cross_entropy(up, target, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (target != IGNORE_INDEX).sum().clamp_min(1)
    return total / count


# --------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    """What :func:`train` returns: the model (eval mode) and where the run ended."""

    model: CANet
    step: int
    total_steps: int
    out: Path
    losses: list[float] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StepContext:
    """What every training step uses (and no step replaces): :func:`_train_step`'s context."""

    cfg: TrainConfig
    net: nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    model: CANet  # the bare model (checkpoints)
    memory: HistoryMemory
    optim: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    info: DistInfo
    device: torch.device
    use_amp: bool
    source: SegmentationSource | None = None  # the images trained on, when not cfg.dataset's


@dataclass(frozen=True)
class Schedule:
    """How long a run is: ``episodes`` an epoch, ``steps_per_epoch`` (episodes //
    batch_size), ``total`` steps of the schedule, ``end`` the step this call stops at."""

    episodes: int
    steps_per_epoch: int
    total: int
    end: int


def train(cfg: TrainConfig, out: str | os.PathLike[str], *, max_steps: int | None = None,
          resume: bool = False, overwrite: bool = False,
          device: str | torch.device | None = None, progress: bool = True,
          dataset: Any = None, source: SegmentationSource | None = None) -> TrainResult:
    """Train CANet with ``cfg``; write ``out/last.pt``, ``out/log.csv`` and ``out/model.pt``.

    Args:
        cfg: the run's configuration (:func:`canetlib.configs.get_config`).
        out: output folder.
        max_steps: stop at this global step (the schedule still spans
            ``epochs``), e.g. for smoke tests; ``None`` = all epochs.
        resume: continue from ``out/last.pt`` (exactly, on the same hardware).
        overwrite: replace a previous run in ``out``.
        device: default CUDA when available (``LOCAL_RANK``'s GPU under torchrun).
        progress: tqdm bar with loss and lr (rank 0 only).
        dataset: a training episode dataset to use instead of building one.
        source: any :class:`~canetlib.data.SegmentationSource` with a training pool (a
            :class:`~canetlib.data.folder.FolderSource`, your own subclass) to train on
            instead of ``cfg.dataset``'s; validation draws from it too.

    Raises:
        ValueError: bad folder state, a checkpoint of another config or
            architecture, ``max_steps`` below 1 or below the step ``resume``
            starts from (nothing written), or a NaN/inf loss (the message names the step).
        OSError: ``out`` cannot be written (checked before any work).
    """
    procs = _start_processes(cfg, max_steps, device)
    if dataset is not None and source is not None:
        raise ValueError("train: give dataset= or source=, not both")
    if dataset is None:  # bad data is refused before the run folder is touched
        dataset = build_train_dataset(cfg, source)
    out = Path(out)
    # the output folder (rank 0 decides, the others follow) and the state to resume
    resume_from = open_run_folder(out, resume, overwrite, info=procs.info,
                                  broadcast=procs.distributed, lock=True)
    try:
        return _train_in(cfg, out, procs, resume_from, max_steps, progress, dataset, source)
    finally:
        release_run_folder(out)


def _train_in(cfg: TrainConfig, out: Path, procs: Processes, resume_from: Path | None,
              max_steps: int | None, progress: bool, dataset: Any,
              source: SegmentationSource | None = None) -> TrainResult:
    """The run of :func:`train` in its opened (locked) folder ``out``."""
    state = load_resumable(resume_from, cfg, max_steps, kind="train", config_key="train_config",
                           what="training",
                           refusal="not a training checkpoint (no optimizer/step); cannot resume")
    ds = dataset if dataset is not None else build_train_dataset(cfg, source)
    sched = _schedule(cfg, len(ds), max_steps)
    # the order matters for exact reruns: the model's init draws from torch's RNG after
    # the dataset is built, and a resumed run restores the RNG before the loader exists
    model, memory = _model_and_memory(cfg, state, resume_from, sched.episodes, procs.device)
    ctx = dataclasses.replace(_step_context(cfg, procs, model, memory, state), source=source)
    run = Run(out, partial(_checkpoint, ctx, sched.steps_per_epoch), end=sched.end,
              save_every=cfg.save_every, state=state, info=procs.info, progress=progress,
              desc=f"train {cfg.name}")
    with run:
        validation = _train_loop(ctx, run, ds, sched, out)
    run.finish()  # last.pt at the final step
    _save_final_model(ctx, out)
    end_processes(procs)
    model.eval()
    model.input_size = cfg.train_size  # fed at its training size, as when loaded from model.pt
    return TrainResult(model, run.step, sched.total, out, run.losses, validation)


def _start_processes(cfg: TrainConfig, max_steps: int | None,
                     device: str | torch.device | None) -> Processes:
    """Threads, device and the process group under torchrun; the global batch must split
    evenly over the processes."""
    check_max_steps(max_steps)
    procs = start_processes(device, cfg.threads)
    if cfg.batch_size % procs.info.world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the "
                         f"{procs.info.world} processes")
    return procs


def _schedule(cfg: TrainConfig, episodes: int, max_steps: int | None) -> Schedule:
    """Epochs of ``episodes // batch_size`` steps; this call stops at ``max_steps``."""
    spe = episodes // cfg.batch_size
    if spe < 1:
        raise ValueError(f"an epoch has {episodes} episodes, fewer than batch_size "
                         f"{cfg.batch_size}")
    total = cfg.epochs * spe
    end = total if max_steps is None else min(total, int(max_steps))
    return Schedule(episodes, spe, total, end)


def _model_and_memory(cfg: TrainConfig, state: dict[str, Any] | None, source: Path | None,
                      episodes: int, dev: torch.device) -> tuple[CANet, HistoryMemory]:
    """The model (training mode, on ``dev``) and the IOM history memory: fresh, or on
    resume both from ``last.pt`` (every weight, except a packaged backbone's, which its
    package provides again)."""
    if state is None:
        model = build_model(cfg)
    else:
        model = CANet.from_config(cfg.model_config(),
                                  pretrained=ckpt_io.packaged_backbone(cfg.backbone))
    memory = HistoryMemory(episodes)
    if state is not None:
        ckpt_io.load_state(model, state["model"], str(source))
        memory.load_state_dict(state["history"])
    model.to(dev).train()
    if dev.type == "cuda" and cfg.channels_last:
        model.use_channels_last()
    return model, memory


def _step_context(cfg: TrainConfig, procs: Processes, model: CANet, memory: HistoryMemory,
                  state: dict[str, Any] | None) -> StepContext:
    """Optimizer and loss scaler (on resume: their states and the RNG states from
    ``last.pt``), and the model wrapped in DistributedDataParallel under torchrun."""
    dev = procs.device
    optim = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    use_amp = dev.type == "cuda" and cfg.amp is not False
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype(dev) == torch.float16)
    if state is not None:
        optim.load_state_dict(state["optimizer"])
        if "scaler" in state and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    net: nn.Module = model
    if procs.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        unused = cfg.fusion == "attention" and cfg.shots == 1
        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                  find_unused_parameters=unused)
    return StepContext(cfg, net, model, memory, optim, scaler, procs.info, dev, use_amp)


def _train_loop(ctx: StepContext, run: Run, ds: Any, sched: Schedule,
                out: Path) -> list[dict[str, Any]]:
    """Every step from ``run.step`` to ``sched.end`` with one loader for the rest of the
    run (persistent workers keep their caches); the engine logs every step and writes
    ``last.pt`` every ``save_every`` steps. Returns the validation results."""
    cfg, info, spe = ctx.cfg, ctx.info, sched.steps_per_epoch
    validation: list[dict[str, Any]] = []
    batches = run_batches(cfg, info, sched.episodes, run.step, sched.end)
    loader: Any = DataLoader(EpochEpisodes(ds), batch_sampler=batches, collate_fn=collate,
                             num_workers=cfg.num_workers) if batches else []
    run.restart_clock()
    for batch in loader:
        epoch = run.step // spe
        lr = set_lr(ctx.optim, poly_lr(cfg, run.step, sched.total))
        loss = _train_step(ctx, batch, run.step, epoch)
        run.step_done(loss, lr, epoch)
        done, rest = divmod(run.step, spe)
        if cfg.validate_every and info.main and rest == 0 and done % cfg.validate_every == 0:
            validation.append(_validate_epoch(ctx, run, done, out))
    return validation


def _validate_epoch(ctx: StepContext, run: Run, epoch: int, out: Path) -> dict[str, Any]:
    """Validation at the end of ``epoch`` (rank 0): a row of ``out/val.csv``; the model goes
    back to training mode and the step clock restarts."""
    metrics = validate(ctx.model, ctx.cfg, ctx.device, ctx.source)
    ctx.model.train()
    row = [run.step, epoch, *[f"{v:.4f}" for v in metrics.values()]]
    append_row(out / "val.csv", row, header=["step", "epoch", *metrics])
    run.restart_clock()
    return {"epoch": epoch, **metrics}


def _save_final_model(ctx: StepContext, out: Path) -> None:
    """``model.pt`` (rank 0): the fp16 model payload and the training config (e.g. the
    evaluator's input size)."""
    if ctx.info.main:
        final = ckpt_io.model_payload(ctx.model, half=True)
        final["train_config"] = ctx.cfg.to_dict()
        ckpt_io.save_atomic(final, out / "model.pt")


def _train_step(ctx: StepContext, batch: dict[str, Any], step: int, epoch: int) -> float:
    """One SGD step (0-based global ``step`` of ``epoch``) on this rank's share of a
    global batch; returns the global mean loss."""
    cfg, dev, info = ctx.cfg, ctx.device, ctx.info
    query = batch["query_image"].to(dev, non_blocking=True)
    target = batch["query_mask"].to(dev, non_blocking=True)
    supports = batch["support_images"].to(dev, non_blocking=True)
    masks = batch["support_masks"].to(dev, non_blocking=True)
    indices: Tensor = batch["index"]
    if cfg.iom_history == "own":
        history, own = None, keep_history(indices.tolist(), cfg.mask_dropout, cfg.seed, epoch)
    else:
        history = ctx.memory.inputs(indices.tolist(), cfg.mask_dropout, cfg.seed, epoch, dev)
        own = None
    reseed_step(cfg.seed, step, info.rank)  # Dropout2d masks of this step
    with autocast(dev, ctx.use_amp):
        out = ctx.net(query, supports, masks, iterations=0, history=history, check=step == 0,
                      own_history=own)
    logits = out.logits[-1]
    loss = pixel_loss(logits, target)
    value = check_loss(float(mean_over_ranks(loss.detach(), info)), step + 1, epoch=epoch,
                       hint=f"{LR_HINT} or check the data")  # the NaN guard
    ctx.optim.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.step(ctx.optim)
    ctx.scaler.update()
    fg = torch.softmax(logits.detach().float(), dim=1)[:, 1]
    ctx.memory.update(all_gather(indices.to(dev), info).cpu(), all_gather(fg, info).cpu())
    return value


def _checkpoint(ctx: StepContext, spe: int, step: int, seconds: float) -> dict[str, Any]:
    """``last.pt``: model, optimizer, RNG states, history memory, config (and scaler)."""
    payload = ckpt_io.model_payload(ctx.model)
    payload.update({
        "kind": "train", "step": step, "epoch": step // spe, "seconds": seconds,
        "optimizer": ctx.optim.state_dict(), "rng": rng_state(),
        "history": ctx.memory.state_dict(), "train_config": ctx.cfg.to_dict(),
    })
    if ctx.scaler.is_enabled():
        payload["scaler"] = ctx.scaler.state_dict()
    return payload


# --------------------------------------------------------------------------- validation
def validate(model: CANet, cfg: TrainConfig, device: torch.device,
             source: SegmentationSource | None = None) -> dict[str, float]:
    """mIoU/FB-IoU on the held-out part of the training pool (never test episodes)."""
    from canetlib.evaluate import evaluate

    res = evaluate(model, build_val_dataset(cfg, source), iterations=cfg.iterations, device=device,
                   progress=False)
    return {"miou": float(res["miou"]), "fbiou": float(res["fbiou"])}


#: the trainer, and the pieces the book's chapters, scripts/ and the train command import
#: from here
__all__ = [
    "HistoryMemory",
    "Schedule",
    "StepContext",
    "TrainResult",
    "build_model",
    "build_train_dataset",
    "build_val_dataset",
    "dist_info",
    "iter_log",
    "make_optimizer",
    "pixel_loss",
    "poly_lr",
    "reseed_step",
    "train",
    "validate",
]
