"""Fold a frozen backbone's BatchNorm layers into the convolutions before them.

CANet never trains its backbone and keeps BatchNorm in eval mode (section 5.1:
the ImageNet network is a fixed feature extractor), so every ``BatchNorm2d`` is
a fixed per-channel affine map ``y = a * x + b`` applied to the output of the
convolution just before it. Scaling that convolution's filters by ``a`` and
adding ``b`` to its bias gives the same features (up to float rounding) with one
pass over memory less per layer: :func:`fold_batchnorm` builds such a copy for
inference; the model's own modules, parameters and checkpoints are untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "foldable_pairs"]


def _set_child(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def foldable_pairs(backbone: nn.Module) -> list[tuple[str, str]]:
    """``(conv, batchnorm)`` module names where a BatchNorm directly follows its conv.

    "Directly follows" is read from registration order (the order in which
    ResNet, VGG and EfficientNet define ``conv -> bn``) plus a channel check;
    :func:`fold_batchnorm` then verifies the folded copy on an input, so a
    wrong pairing can never pass silently.
    """
    pairs = []
    previous: tuple[str, nn.Module] | None = None
    for name, module in backbone.named_modules():
        if list(module.children()):
            continue  # containers: only leaves are layers
        if (isinstance(module, nn.BatchNorm2d) and previous is not None
                and isinstance(previous[1], nn.Conv2d)
                and previous[1].out_channels == module.num_features
                and module.track_running_stats and module.running_mean is not None):
            pairs.append((previous[0], name))
        previous = (name, module)
    return pairs


def fold_batchnorm(backbone: nn.Module, example: Tensor | None = None,
                   rtol: float = 1e-3, atol: float = 1e-4) -> nn.Module:
    """A copy of the eval-mode ``backbone`` with each BatchNorm folded into its conv.

    Args:
        backbone: a frozen feature extractor returning a tensor or a dict of them.
        example: an input to check the copy on (default: two random 64 px images
            on the backbone's device); outputs must agree within ``rtol``/``atol``
            relative to their scale.
    Raises:
        RuntimeError: the folded copy disagrees with the original (a pairing the
            registration order got wrong); use the original then.
    """
    folded = copy.deepcopy(backbone).eval()
    for conv_name, bn_name in foldable_pairs(folded):
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        _set_child(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _set_child(folded, bn_name, nn.Identity())
    for p in folded.parameters():
        p.requires_grad_(False)
    param = next(backbone.parameters(), None)
    if example is None:
        gen = torch.Generator().manual_seed(0)
        example = torch.randn(2, 3, 64, 64, generator=gen)
    if param is not None:
        example = example.to(param.device)
    with torch.inference_mode():  # .forward: the check does not fire the caller's hooks
        _check_same(backbone.eval().forward(example), folded.forward(example), rtol, atol)
    return folded


def _check_same(a: object, b: object, rtol: float, atol: float) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            _check_same(a[key], b[key], rtol, atol)
        return
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    scale = float(a.abs().max()) or 1.0
    if not torch.allclose(a.float() / scale, b.float() / scale, rtol=rtol, atol=atol):
        err = float((a.float() - b.float()).abs().max()) / scale
        raise RuntimeError(f"folding BatchNorm changed the backbone's output (max relative "
                           f"error {err:.2e}); a conv/BatchNorm pairing was wrong")
