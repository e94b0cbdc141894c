"""The CANet trainer: the paper's recipe on top of :mod:`canetlib.training.engine`.

:func:`train` reads top to bottom as the numbered steps of a run; every helper it calls
follows it in this file, and the engine never calls back into them. The recipe (paper
sections 5.1 and 4.2): SGD (lr 0.0025, momentum 0.9, weight decay 5e-4) on batches of
episodes, the mean pixel cross-entropy over the bilinearly upsampled logits with 255
ignored (:func:`pixel_loss`), and the IOM input of each training sample equal to *that
sample's prediction from the previous epoch*, replaced by the empty mask with probability
``pr = 0.7`` (:mod:`canetlib.training.history`). The defaults live in
:mod:`canetlib.training.configs`, the starting point (model, optimizer, lr schedule) in
:mod:`canetlib.training.start`.

A run is reproducible and resumable: episodes are a function of ``(seed, epoch, index)``
(:mod:`canetlib.training.episodes`), dropout is reseeded every step, and ``DIR/last.pt`` is
written atomically with everything a resumed run needs, here the history memory and the
loss scaler too. Under torchrun each process takes a disjoint share of every global batch;
the history memory is all-gathered so every process remembers every prediction.
``DIR/model.pt`` is the final model (the fp16 payload of
:func:`canetlib.model.checkpoint.model_payload` plus the ``train_config``).

**No model selection on test episodes**: the final checkpoint is the result. Optional
validation (``validate_every``) scores held-out training images (``val_fraction``) or,
with ``val_by="classes"``, held-out training classes (:class:`~canetlib.training.episodes.HeldOutSource`),
never a test class or a test image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from canetlib.data.source import SegmentationSource
from canetlib.model import CANet
from canetlib.model import checkpoint as ckpt_io
from canetlib.model.inputs import IGNORE_INDEX
from canetlib.model.runtime import amp_dtype, autocast
from canetlib.training.configs import TrainConfig
from canetlib.training.engine import (
    LR_HINT,
    DistInfo,
    Processes,
    Run,
    all_gather,
    append_row,
    check_loss,
    check_max_steps,
    end_processes,
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
from canetlib.training.episodes import (
    EpochEpisodes,
    build_train_dataset,
    build_val_dataset,
    collate,
    run_batches,
)
from canetlib.training.history import HistoryMemory
from canetlib.training.start import initial_model, make_optimizer, poly_lr

#: why ``--resume`` refuses a checkpoint that :func:`train` did not write
NOT_RESUMABLE = "not a training checkpoint (no optimizer/step); cannot resume"


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
class Schedule:
    """How long a run is: ``episodes`` an epoch, ``steps_per_epoch`` (episodes //
    batch_size), ``total`` steps of the schedule, ``end`` the step this call stops at."""

    episodes: int
    steps_per_epoch: int
    total: int
    end: int


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


def train(cfg: TrainConfig, out: str | os.PathLike[str], *, max_steps: int | None = None,
          resume: bool = False, overwrite: bool = False,
          device: str | torch.device | None = None, progress: bool = True,
          dataset: Any = None, source: SegmentationSource | None = None) -> TrainResult:
    """Train CANet with ``cfg``; write ``out/last.pt``, ``out/log.csv`` and ``out/model.pt``.

    Args:
        cfg: the run's configuration (:func:`canetlib.training.configs.get_config`).
        out: output folder.
        max_steps: stop at this global step (the schedule still spans ``epochs``).
        resume: continue from ``out/last.pt`` (exactly, on the same hardware).
        overwrite: replace a previous run in ``out``.
        device: default CUDA when available (``LOCAL_RANK``'s GPU under torchrun).
        progress: tqdm bar with loss and lr (rank 0 only).
        dataset: a training episode dataset to use instead of building one.
        source: a :class:`~canetlib.data.SegmentationSource` with a training pool to train
            and validate on instead of ``cfg.dataset``'s.

    Raises:
        ValueError: bad folder state, a checkpoint of another config or architecture,
            ``max_steps`` below 1 or below the step ``resume`` starts from (nothing
            written), or a NaN/inf loss (the message names the step).
        OSError: ``out`` cannot be written (checked before any work).
    """
    # 1. threads, device and, under torchrun, the process group
    procs = _start_processes(cfg, max_steps, device)
    # 2. the training episodes (bad data is refused before the run folder is touched)
    if dataset is not None and source is not None:
        raise ValueError("train: give dataset= or source=, not both")
    episodes = dataset if dataset is not None else build_train_dataset(cfg, source)
    # 3. the run folder, locked (rank 0 decides, the others follow), and the state to resume
    out = Path(out)
    resume_from = open_run_folder(out, resume, overwrite, info=procs.info,
                                  broadcast=procs.distributed, lock=True)
    try:
        state = load_resumable(resume_from, cfg, max_steps, kind="train",
                               config_key="train_config", what="training", refusal=NOT_RESUMABLE)
        # 4. epochs of episodes // batch_size steps; this call stops at max_steps
        sched = _schedule(cfg, len(episodes), max_steps)
        # 5. model and history memory: the model's init draws from torch's RNG after the
        #    episodes are built, and a resumed run restores the RNG before the loader exists
        model, memory = _model_and_memory(cfg, state, resume_from, sched.episodes, procs.device)
        # 6. optimizer, loss scaler and RNG states; DistributedDataParallel under torchrun
        ctx = _step_context(cfg, procs, model, memory, state, source)
        # 7. the steps: a log row each, last.pt when due, validation every validate_every epochs
        run = Run(out, end=sched.end, save_every=cfg.save_every, state=state, info=procs.info,
                  progress=progress, desc=f"train {cfg.name}")
        with run:
            validation = _train_loop(ctx, run, episodes, sched, out)
        # 8. last.pt at the final step, then model.pt
        if run.finish():
            run.save(_checkpoint(ctx, sched.steps_per_epoch, run))
        _save_final_model(ctx, out)
        end_processes(procs)
    finally:
        release_run_folder(out)
    # 9. the model for evaluation, fed at its training size as when loaded from model.pt
    model.eval()
    model.input_size = cfg.train_size
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
        model = initial_model(cfg)
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
                  state: dict[str, Any] | None,
                  source: SegmentationSource | None = None) -> StepContext:
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
    return StepContext(cfg, net, model, memory, optim, scaler, procs.info, dev, use_amp, source)


def _train_loop(ctx: StepContext, run: Run, episodes: Any, sched: Schedule,
                out: Path) -> list[dict[str, Any]]:
    """Every step from ``run.step`` to ``sched.end`` with one loader for the rest of the
    run (persistent workers keep their caches); ``last.pt`` when the engine says it is due.
    Returns the validation results."""
    cfg, info, spe = ctx.cfg, ctx.info, sched.steps_per_epoch
    validation: list[dict[str, Any]] = []
    batches = run_batches(cfg, info, sched.episodes, run.step, sched.end)
    loader: Any = DataLoader(EpochEpisodes(episodes), batch_sampler=batches,
                             collate_fn=collate, num_workers=cfg.num_workers) if batches else []
    run.restart_clock()
    for batch in loader:
        epoch = run.step // spe
        lr = set_lr(ctx.optim, poly_lr(cfg, run.step, sched.total))
        loss = _train_step(ctx, batch, run.step, epoch)
        if run.step_done(loss, lr, epoch):
            run.save(_checkpoint(ctx, spe, run))
        done, rest = divmod(run.step, spe)
        if cfg.validate_every and info.main and rest == 0 and done % cfg.validate_every == 0:
            validation.append(_validate_epoch(ctx, run, done, out))
    return validation


def _train_step(ctx: StepContext, batch: dict[str, Any], step: int, epoch: int) -> float:
    """One SGD step (0-based global ``step`` of ``epoch``) on this rank's share of a
    global batch; returns the global mean loss."""
    cfg, dev, info = ctx.cfg, ctx.device, ctx.info
    query = batch["query_image"].to(dev, non_blocking=True)
    target = batch["query_mask"].to(dev, non_blocking=True)
    supports = batch["support_images"].to(dev, non_blocking=True)
    masks = batch["support_masks"].to(dev, non_blocking=True)
    indices: Tensor = batch["index"]
    history = ctx.memory.inputs(indices.tolist(), cfg.mask_dropout, cfg.seed, epoch, dev)
    reseed_step(cfg.seed, step, info.rank)  # Dropout2d masks of this step
    with autocast(dev, ctx.use_amp):
        out = ctx.net(query, supports, masks, iterations=0, history=history, check=step == 0)
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


def _checkpoint(ctx: StepContext, spe: int, run: Run) -> dict[str, Any]:
    """``last.pt`` at ``run.step``: model, optimizer, RNG states, history memory, config
    (and loss scaler)."""
    payload = ckpt_io.model_payload(ctx.model)
    payload.update({
        "kind": "train", "step": run.step, "epoch": run.step // spe, "seconds": run.seconds,
        "optimizer": ctx.optim.state_dict(), "rng": rng_state(),
        "history": ctx.memory.state_dict(), "train_config": ctx.cfg.to_dict(),
    })
    if ctx.scaler.is_enabled():
        payload["scaler"] = ctx.scaler.state_dict()
    return payload


def _validate_epoch(ctx: StepContext, run: Run, epoch: int, out: Path) -> dict[str, Any]:
    """Validation at the end of ``epoch`` (rank 0): a row of ``out/val.csv``; the model goes
    back to training mode and the step clock restarts."""
    metrics = validation_score(ctx.model, ctx.cfg, ctx.device, ctx.source)
    ctx.model.train()
    row = [run.step, epoch, *[f"{v:.4f}" for v in metrics.values()]]
    append_row(out / "val.csv", row, header=["step", "epoch", *metrics])
    run.restart_clock()
    return {"epoch": epoch, **metrics}


def validation_score(model: CANet, cfg: TrainConfig, device: torch.device,
                     source: SegmentationSource | None = None) -> dict[str, float]:
    """mIoU/FB-IoU on the held-out part of the training pool (never test episodes)."""
    from canetlib.evaluation import evaluate

    res = evaluate(model, build_val_dataset(cfg, source), iterations=cfg.iterations,
                   device=device, progress=False)
    return {"miou": float(res["miou"]), "fbiou": float(res["fbiou"])}


def _save_final_model(ctx: StepContext, out: Path) -> None:
    """``model.pt`` (rank 0): the fp16 model payload and the training config (e.g. the
    evaluator's input size)."""
    if ctx.info.main:
        final = ckpt_io.model_payload(ctx.model, half=True)
        final["train_config"] = ctx.cfg.to_dict()
        ckpt_io.save_atomic(final, out / "model.pt")


__all__ = ["Schedule", "StepContext", "TrainResult", "pixel_loss", "train", "validation_score"]
