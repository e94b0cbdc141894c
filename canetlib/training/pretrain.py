"""Offline backbone pretraining: the miniature of ImageNet pretraining.

CANet starts from an ImageNet-pretrained ResNet-50 that stays frozen (paper
section 5.1). Offline there is no ImageNet, so the
``resnet-tiny`` backbone is pretrained here on the embedded *pretraining
classes* (:class:`canetlib.data.PretrainingPool`: several hundred OpenMoji
glyph classes, none of them one of the 20 benchmark categories), then frozen
and used by the ``synthetic-*`` CANet configs. The 20 benchmark classes
(training *and* test classes of every fold) are never seen here.

Task: a temporary head on the backbone's block2 + block3 features (the ones
CANet compares) predicts

* every pixel's class (the glyph's class on its mask, background elsewhere):
  a 1x1 convolution on the 1/8 grid, logits upsampled to the image; and
* the image's class from globally pooled block3 features (auxiliary loss).

``mosaic`` of the images tile four half-size samples into one image so that
the backbone also sees several objects side by side, as in the episode scenes.
Only the backbone is kept: ``DIR/backbone.pt`` (a ``kind="backbone"``
checkpoint; :func:`load_backbone` puts it into a :class:`CANet`).
The loop runs on :mod:`canetlib.training.engine`, so resuming is exact as for the
CANet trainer: samples are a function of ``(seed, epoch, index)``,
``DIR/last.pt`` holds model, head, optimizer, step and RNG states.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from canetlib.model import CANet
from canetlib.model import checkpoint as ckpt_io
from canetlib.model.backbone import TinyResNetBackbone, freeze
from canetlib.model.runtime import autocast, default_device
from canetlib.training.configs import PretrainConfig
from canetlib.training.engine import (
    Run,
    check_loss,
    check_max_steps,
    dist_info,
    load_resumable,
    mix_seed,
    open_run_folder,
    release_run_folder,
    reseed_step,
    rng_state,
    set_lr,
    set_rng_state,
)
from canetlib.training.episodes import epoch_batches

#: ``kind`` of a backbone-only checkpoint
BACKBONE_KIND = ckpt_io.BACKBONE_KIND


class PretrainNet(nn.Module):
    """``resnet-tiny`` backbone + the temporary pretraining head (pixel and image classes)."""

    def __init__(self, cfg: PretrainConfig, num_classes: int) -> None:
        super().__init__()
        self.blocks = tuple(cfg.blocks)
        self.backbone = TinyResNetBackbone(self.blocks, cfg.backbone_widths)
        channels = sum(self.backbone.channels[b] for b in self.blocks)
        self.pixel_head = nn.Conv2d(channels, num_classes + 1, 1)
        self.image_head = nn.Linear(self.backbone.channels[self.blocks[-1]], num_classes)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.backbone(images)
        grid = torch.cat([feats[b] for b in self.blocks], dim=1)
        pixel = self.pixel_head(grid)
        image = self.image_head(feats[self.blocks[-1]].mean(dim=(2, 3)))
        return pixel, image


class PretrainSamples(Dataset):
    """Pretraining samples keyed by ``(epoch, index)``; ``mosaic`` tiles 2 x 2 samples.

    Item: ``image (3, S, S)``, ``pixels (S, S)`` int64 (0 background, class + 1
    on the object), ``label`` (the image's class; -1 for a mosaic, which has
    no single class and only trains the pixel head).
    """

    def __init__(self, pool: Any, mosaic: float, seed: int) -> None:
        self.pool, self.mosaic, self.seed = pool, mosaic, seed

    def __len__(self) -> int:
        return len(self.pool)

    def _one(self, index: int) -> tuple[Tensor, Tensor, int]:
        image, label, mask = self.pool[index]
        return image, mask * (label + 1), int(label)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, index, 11))
        image, pixels, label = self._one(index)
        if self.mosaic > 0 and torch.rand(1, generator=g).item() < self.mosaic:
            others = torch.randint(len(self.pool), (3,), generator=g).tolist()
            tiles = [(image, pixels)] + [self._one(i)[:2] for i in others]
            s = image.shape[-1]
            image = torch.zeros_like(image)
            pixels = torch.zeros_like(pixels)
            for t, (im, px) in enumerate(tiles):
                r, c = divmod(t, 2)
                half = s // 2
                sl = (slice(r * half, (r + 1) * half), slice(c * half, (c + 1) * half))
                image[:, sl[0], sl[1]] = F.interpolate(im[None], size=(half, half),
                                                       mode="bilinear", antialias=True,
                                                       align_corners=False)[0]
                pixels[sl[0], sl[1]] = px[::2, ::2][:half, :half]
            label = -1
        return {"image": image, "pixels": pixels, "label": label}


def _collate(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    return {"image": torch.stack([it["image"] for it in items]),
            "pixels": torch.stack([it["pixels"] for it in items]),
            "label": torch.tensor([it["label"] for it in items], dtype=torch.long)}


def build_pool(cfg: PretrainConfig, split: str = "train") -> Any:
    """The embedded pretraining pool (classes disjoint from the 20 benchmark classes)."""
    from canetlib.data import PretrainingPool

    return PretrainingPool(split, images_per_class=cfg.images_per_class, seed=cfg.seed,
                           image_size=cfg.image_size)


@dataclass
class PretrainResult:
    """Where a pretraining run ended; ``backbone_path`` is the kept backbone."""

    net: PretrainNet
    step: int
    total_steps: int
    final_loss: float
    backbone_path: Path


def pretrain(cfg: PretrainConfig, out: str | os.PathLike[str], *, max_steps: int | None = None,
             resume: bool = False, overwrite: bool = False,
             device: str | torch.device | None = None, progress: bool = True) -> PretrainResult:
    """Pretrain the ``resnet-tiny`` backbone; write ``out/last.pt``, ``log.csv``, ``backbone.pt``.

    Same folder rules as :func:`canetlib.training.recipe.train` (refuse another run
    without ``resume``/``overwrite``; ``resume`` continues exactly).
    """
    dev = _one_process(cfg, max_steps, device)
    out = Path(out)
    resume_from = open_run_folder(out, resume, overwrite, extra=("backbone.pt",), lock=True)
    try:
        return _pretrain_in(cfg, out, dev, resume_from, max_steps, progress)
    finally:
        release_run_folder(out)


def _pretrain_in(cfg: PretrainConfig, out: Path, dev: torch.device,
                 resume_from: Path | None, max_steps: int | None,
                 progress: bool) -> PretrainResult:
    """The run of :func:`pretrain` in its opened (locked) folder ``out``."""
    state = load_resumable(resume_from, cfg, max_steps, kind="pretrain",
                           config_key="pretrain_config", what="pretraining",
                           refusal="not a pretraining checkpoint; cannot resume it with "
                                   f"{cfg.name}")
    # samples of the pretraining classes, keyed by (epoch, index)
    pool = build_pool(cfg)
    samples = PretrainSamples(pool, cfg.mosaic, cfg.seed)
    end = cfg.steps if max_steps is None else min(cfg.steps, int(max_steps))
    net, optim = _net_and_optimizer(cfg, pool.num_classes, state, dev)
    run = Run(out, end=end, save_every=cfg.save_every, state=state, progress=progress,
              desc=f"pretrain {cfg.name}")
    with run:
        _pretrain_loop(cfg, net, optim, run, samples, dev)
    if run.finish():  # last.pt at the final step; keep the backbone
        run.save(_checkpoint(net, optim, cfg, run.step, run.seconds))
    path = ckpt_io.save_atomic(backbone_payload(net, cfg), out / "backbone.pt")
    net.eval()
    final = run.losses[-1] if run.losses else float("nan")
    return PretrainResult(net, run.step, cfg.steps, final, path)


def _one_process(cfg: PretrainConfig, max_steps: int | None,
                 device: str | torch.device | None) -> torch.device:
    """Check ``max_steps`` and refuse torchrun; set the threads; the device."""
    check_max_steps(max_steps)
    if dist_info().world > 1:
        raise ValueError("backbone pretraining runs in one process; start it without torchrun")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return default_device(device)


def _net_and_optimizer(cfg: PretrainConfig, num_classes: int, state: dict[str, Any] | None,
                       dev: torch.device) -> tuple[PretrainNet, torch.optim.Optimizer]:
    """The network (seeded init, training mode on ``dev``) and SGD with Nesterov momentum,
    no weight decay on biases and norms; on resume their states and the RNG states."""
    torch.manual_seed(cfg.seed)
    net = PretrainNet(cfg, num_classes)
    params = [p for p in net.parameters()]
    optim = torch.optim.SGD([{"params": [p for p in params if p.dim() > 1],
                              "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.dim() <= 1],
                              "weight_decay": 0.0}],
                            lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if state is not None:
        net.load_state_dict(state["net"])
        optim.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
    net.to(dev).train()
    if dev.type == "cuda" and cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    return net, optim


def _pretrain_loop(cfg: PretrainConfig, net: PretrainNet, optim: torch.optim.Optimizer,
                   run: Run, samples: PretrainSamples, dev: torch.device) -> None:
    """Steps until ``run.done``, one loader per epoch; the engine logs and writes ``last.pt``."""
    spe = len(samples) // cfg.batch_size
    while not run.done:
        epoch, pos = divmod(run.step, spe)
        batches = epoch_batches(cfg.seed, epoch, len(samples), cfg.batch_size)
        loader = DataLoader(samples, batch_sampler=batches[pos:][:run.end - run.step],
                            collate_fn=_collate, num_workers=cfg.num_workers)
        run.restart_clock()
        for batch in loader:
            lr = set_lr(optim, _lr(cfg, run.step))
            reseed_step(cfg.seed, run.step)
            value = _pretrain_step(cfg, net, optim, batch, run.step, dev)
            if run.step_done(value, lr, epoch):
                run.save(_checkpoint(net, optim, cfg, run.step, run.seconds))


def _pretrain_step(cfg: PretrainConfig, net: PretrainNet, optim: torch.optim.Optimizer,
                   batch: dict[str, Tensor], step: int, dev: torch.device) -> float:
    """One SGD step (0-based ``step``) on a batch; returns its loss (NaN guard on)."""
    images = batch["image"].to(dev)
    if dev.type == "cuda" and cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(dev, dev.type == "cuda" and cfg.amp is not False):
        pixel, image = net(images)
    loss = pretrain_loss(pixel, image, batch["pixels"].to(dev), batch["label"].to(dev),
                         cfg.classification_weight)
    value = check_loss(float(loss.detach()), step + 1, what="pretraining")
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    return value


def pretrain_loss(pixel: Tensor, image: Tensor, pixels: Tensor, labels: Tensor,
                  classification_weight: float) -> Tensor:
    """Pixel cross-entropy on the feature grid + weighted image cross-entropy.

    With hundreds of classes, upsampling the logits to the image would cost
    more than the backbone; the labels are sampled (nearest) on the grid instead.
    """
    grid = F.interpolate(pixels[:, None].float(), size=pixel.shape[-2:], mode="nearest")
    loss = F.cross_entropy(pixel.float(), grid[:, 0].long())
    if classification_weight and bool((labels >= 0).any()):
        loss = loss + classification_weight * F.cross_entropy(image.float(), labels,
                                                              ignore_index=-1)
    return loss


def _lr(cfg: PretrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup`` steps, then poly decay."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * max(0.0, 1.0 - step / cfg.steps) ** cfg.poly_power


def _checkpoint(net: PretrainNet, optim: torch.optim.Optimizer, cfg: PretrainConfig,
                step: int, seconds: float) -> dict[str, Any]:
    """``last.pt``: the backbone payload plus net, optimizer, RNG states and config."""
    payload = backbone_payload(net, cfg)
    payload.update({"kind": "pretrain", "step": step, "seconds": seconds,
                    "net": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                    "optimizer": optim.state_dict(), "rng": rng_state(),
                    "pretrain_config": cfg.to_dict()})
    return payload


# --------------------------------------------------------------------------- backbone files
def backbone_payload(net: PretrainNet | nn.Module, cfg: PretrainConfig) -> dict[str, Any]:
    """A ``kind="backbone"`` checkpoint: the backbone's state and its architecture."""
    backbone = net.backbone if isinstance(net, PretrainNet) else net
    return {"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, "kind": BACKBONE_KIND,
            "model_config": {"backbone": "resnet-tiny",
                             "backbone_widths": list(cfg.backbone_widths),
                             "blocks": list(cfg.blocks)},
            "model": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
            "pretrain_config": cfg.to_dict()}


def load_backbone(model: CANet, name_or_path: str | os.PathLike[str]) -> CANet:
    """Load a pretrained backbone (``kind="backbone"`` file, or any CANet checkpoint's
    backbone) into ``model.backbone`` and keep it frozen.

    Raises:
        ValueError: another backbone architecture (names the mismatch).
    """
    ckpt = ckpt_io.load(name_or_path)
    cfg = ckpt["model_config"]
    state = ckpt["model"]
    if ckpt.get("kind") != BACKBONE_KIND:
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    mine = model.config.to_dict()
    for key in ("backbone", "backbone_widths"):
        if cfg.get(key) != mine.get(key):
            raise ValueError(f"{name_or_path}: backbone {key} is {cfg.get(key)!r} but the "
                             f"model has {mine.get(key)!r}")
    own = model.backbone.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"{name_or_path}: backbone lacks tensors the model needs "
                         f"(e.g. {missing[:3]}); was it pretrained with blocks {cfg.get('blocks')}?")
    bad = [k for k in own if state[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"{name_or_path}: backbone tensor shapes differ, e.g. {bad[:3]}")
    model.backbone.load_state_dict({k: state[k].to(own[k].dtype) for k in own})
    freeze(model.backbone)
    return model


__all__ = ["BACKBONE_KIND", "PretrainNet", "PretrainResult", "PretrainSamples",
           "backbone_payload", "build_pool", "load_backbone", "pretrain", "pretrain_loss"]
