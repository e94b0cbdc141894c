"""Train a k-shot model whose attention branch is also told which support helped (a probe).

The paper's attention branch (section 4.3) learns only through the segmentation loss of the
fused features. This probe adds one term to that loss, a departure from the paper: for every
training episode, each support's own CANet-Init prediction of the query (the IOM's first pass
on that support's comparison features alone, no gradient) gives a per-support loss ``l_i``; the
target weights are ``softmax(-l_i / tau)`` over the k supports, and the branch's weights are
pulled towards them by ``aux_weight * KL(target || weights)``. Everything else is the library's
trainer and the named config (``synthetic-imagenet-5shot`` by default); the run folder is an
ordinary run (``model.pt``, ``log.csv``; the logged loss includes the added term), scored with
``scripts/damage_probe.py``::

    python scripts/attention_supervision_probe.py --fold 0 --out /tmp/pm/f0-5shot-told \\
        --set init_checkpoint=/tmp/isz/f0-valcls/model.pt --set val_by=classes \\
        --set val_classes=3 --set support_damage=0.5 --set threads=1

The code stays here, outside the package, unless its rule
(``data/results/imagenet-backbone/unequal-supports/README.md``) is met.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from canetlib.model.inputs import IGNORE_INDEX
from canetlib.training import recipe
from canetlib.training.configs import get_config


class Captured:
    """The latest comparison features ``(B*k, C, h, w)`` and attention weights ``(B, k)``."""

    compared: Tensor | None = None
    weights: Tensor | None = None


def support_losses(model: Any, compared: Tensor, target: Tensor, k: int) -> Tensor:
    """``(B, k)``: each support's own CANet-Init cross-entropy on the query (no gradient)."""
    was_training = model.iom.training
    model.iom.eval()
    with torch.no_grad():
        zeros = compared.new_zeros(compared.shape[0], 2, *compared.shape[-2:])
        logits = model.iom(compared.detach(), zeros).float()
        up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=True)
        labels = target.repeat_interleave(k, dim=0)
        ce = F.cross_entropy(up, labels, ignore_index=IGNORE_INDEX, reduction="none")
        valid = (labels != IGNORE_INDEX).float()
        per = (ce * valid).sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1.0)
    model.iom.train(was_training)
    return per.view(-1, k)


def told_loss(model: Any, seen: Captured, aux_weight: float, tau: float) -> Any:
    """A ``pixel_loss`` that adds ``aux_weight * KL(softmax(-l / tau) || weights)``."""
    plain = recipe.pixel_loss

    def loss(logits: Tensor, target: Tensor) -> Tensor:
        base = plain(logits, target)
        if seen.compared is None or seen.weights is None:
            return base
        weights = seen.weights.float()
        k = weights.shape[1]
        goal = torch.softmax(-support_losses(model, seen.compared, target, k) / tau, dim=1)
        kl = (goal * (goal.clamp_min(1e-8).log() - weights.clamp_min(1e-8).log())).sum(1)
        seen.compared = seen.weights = None
        return base + aux_weight * kl.mean()

    return loss


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--config", default="synthetic-imagenet-5shot")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], help="TrainConfig key=value")
    p.add_argument("--aux-weight", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=0.1, help="temperature of the target weights")
    args = p.parse_args(argv)
    cfg = get_config(args.config, args.set, fold=args.fold)
    if cfg.fusion != "attention":
        p.error(f"{args.config} has no attention branch (fusion={cfg.fusion})")
    seen = Captured()
    build = recipe.initial_model

    def initial_model(c: Any) -> Any:
        model = build(c)
        model.comparison.register_forward_hook(
            lambda _m, _i, out: setattr(seen, "compared", out))
        model.attention.register_forward_hook(
            lambda _m, _i, out: setattr(seen, "weights", out))
        recipe.pixel_loss = told_loss(model, seen, args.aux_weight, args.tau)
        return model

    recipe.initial_model = initial_model
    result = recipe.train(cfg, args.out, progress=False)
    print(f"{args.out}: {result.step} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
