"""Where a CANet training run starts: the model (seeded head, pretrained backbone, initial
weights), the optimizer and its learning-rate schedule, as :func:`canetlib.training.recipe.train` uses them.
"""

from __future__ import annotations

import torch
from torch import nn

from canetlib.model import CANet
from canetlib.model import checkpoint as ckpt_io
from canetlib.training.configs import TrainConfig


def initial_model(cfg: TrainConfig) -> CANet:
    """CANet from the config, with pretrained backbone / initial weights loaded.

    The head is initialised from ``torch.manual_seed(cfg.seed)`` (N(0, 0.01)
    as the reference), so every process and every rerun starts identically.
    """
    torch.manual_seed(cfg.seed)
    model = CANet.from_config(cfg.model_config(), pretrained=cfg.pretrained)
    if cfg.head_init == "kaiming":
        kaiming_head(model)
    if cfg.backbone_checkpoint:
        from canetlib.training.pretrain import load_backbone

        load_backbone(model, cfg.backbone_checkpoint)
    if cfg.init_checkpoint:
        init_from(model, cfg.init_checkpoint.format(fold=cfg.fold))
    return model


def kaiming_head(model: CANet) -> None:
    """He-normal (fan-in, ReLU) weights and zero biases for every head convolution.

    The classifier keeps a small init (std 0.01) so the first predictions are
    near 50/50. The frozen backbone is untouched.
    """
    for name, module in model.named_modules():
        if name.startswith("backbone") or not isinstance(module, nn.Conv2d):
            continue
        if module is model.iom.classifier:
            nn.init.normal_(module.weight, 0.0, 0.01)
        else:
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_from(model: CANet, name_or_path: str) -> list[str]:
    """Copy every tensor of a model checkpoint whose name and shape match; return the rest.

    Used to start the 5-shot attention model from a 1-shot model: everything
    but the new attention branch is loaded.
    """
    state = ckpt_io.load(name_or_path)["model"]
    own = model.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
           for k, v in state.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise ValueError(f"init_checkpoint {name_or_path!r} does not fit this model: "
                         + "; ".join(bad[:3]))
    loaded = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    if not loaded:
        raise ValueError(f"init_checkpoint {name_or_path!r} shares no tensor with this model")
    own.update(loaded)
    model.load_state_dict(own)
    return sorted(set(own) - set(loaded))


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (paper), or AdamW (``optimizer="adamw"``)."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def poly_lr(cfg: TrainConfig, step: int, total: int) -> float:
    """``lr * (1 - step / total) ** poly_power`` (constant when ``poly_power == 0``)."""
    if cfg.poly_power == 0:
        return cfg.lr
    return cfg.lr * max(0.0, 1.0 - step / total) ** cfg.poly_power


__all__ = ["init_from", "initial_model", "kaiming_head", "make_optimizer", "poly_lr"]
