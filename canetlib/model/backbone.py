"""Frozen feature extractors for the dense comparison module (paper section 4.1).

Every backbone returns a dict of feature maps named ``block2``, ``block3`` and
``block4``, all on the same 1/8 grid (321 px in, 41 x 41 out): layers after
block2 use dilated convolutions instead of strides, as the paper says. Only
the blocks a model asks for are built, so the default ResNet-50 keeps
conv1..layer3 (8,543,296 parameters) and nothing after it.

Backbones are frozen: :func:`freeze` removes their gradients and
:class:`canetlib.CANet` keeps them in eval mode so BatchNorm statistics never
move (the reference code left them in training mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

BLOCKS = ("block2", "block3", "block4")
BACKBONES = ("resnet50", "vgg16", "resnet-tiny", "efficientnet-lite0")


def _deepest(blocks: Sequence[str]) -> int:
    for name in blocks:
        if name not in BLOCKS:
            raise ValueError(f"unknown block {name!r}; choose from {BLOCKS}")
    if not blocks:
        raise ValueError("at least one backbone block must feed the comparison")
    return max(BLOCKS.index(b) for b in blocks) + 2


def dilate_every_unit(layer: nn.Sequential, dilation: int) -> None:
    """Give every bottleneck's 3x3 convolution in ``layer`` this dilation (same-size padding).

    The weights are unchanged: only where each kernel tap reads moves. torchvision dilates
    the units after the first; the reference code dilates the first one too.
    """
    for unit in layer:
        conv = unit.conv2
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation, dilation)


class ResNet50Backbone(nn.Module):
    """ImageNet ResNet-50 up to the deepest requested block, dilated after block2.

    ``layer3`` runs with stride 1 and dilation 2 in all six of its units, as in
    the reference code (torchvision's ``replace_stride_with_dilation`` leaves the
    first unit at dilation 1); ``layer4``, if asked for, with dilation 4 in every
    unit. So block2/3/4 share the 1/8 grid. Weights are torchvision's
    ``ResNet50_Weights.IMAGENET1K_V1``, the weights the reference code used.
    """

    def __init__(self, blocks: Sequence[str], pretrained: bool) -> None:
        super().__init__()
        from torchvision.models import ResNet50_Weights, resnet50

        deepest = _deepest(blocks)
        weights = ResNet50_Weights.IMAGENET1K_V1 if pretrained else None
        net = _load_torchvision(lambda: resnet50(
            weights=weights, replace_stride_with_dilation=[False, True, True]))
        dilate_every_unit(net.layer3, 2)
        dilate_every_unit(net.layer4, 4)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3 if deepest >= 3 else None
        self.layer4 = net.layer4 if deepest >= 4 else None
        self.channels = {"block2": 512, "block3": 1024, "block4": 2048}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        x = self.layer2(self.layer1(self.stem(x)))
        out["block2"] = x
        if self.layer3 is not None:
            x = self.layer3(x)
            out["block3"] = x
        if self.layer4 is not None:
            out["block4"] = self.layer4(x)
        return out


class VGG16Backbone(nn.Module):
    """VGG16 stages 2, 3 and 4 as block2/3/4 (paper Table 3, VGG row).

    Our reading, as the paper gives no detail: stage 4 runs without the
    pooling before it replaced by dilation, i.e. we keep VGG's pools up to
    stage 3 (1/8 grid at stage 4's input) and resample stage 2 (1/2) and
    stage 3 (1/4) outputs to that grid with average pooling.
    """

    # indices of torchvision's vgg16().features: stage ends (after ReLU)
    _STAGE_END: ClassVar[dict[str, int]] = {"block2": 9, "block3": 16, "block4": 23}

    def __init__(self, blocks: Sequence[str], pretrained: bool) -> None:
        super().__init__()
        from torchvision.models import VGG16_Weights, vgg16

        deepest = _deepest(blocks)
        weights = VGG16_Weights.IMAGENET1K_V1 if pretrained else None
        features = _load_torchvision(lambda: vgg16(weights=weights)).features
        end = self._STAGE_END[BLOCKS[deepest - 2]]
        self.features = features[:end]
        self.channels = {"block2": 128, "block3": 256, "block4": 512}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            for name, end in self._STAGE_END.items():
                if i + 1 == end:
                    out[name] = x
        target = _grid_size(out)
        return {k: _to_grid(v, target) for k, v in out.items()}


class _BasicBlock(nn.Module):
    """ResNet basic block with an optional dilation (torchvision's has none)."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int) -> None:
        super().__init__()
        pad = dilation
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, pad, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.down(x))


class TinyResNetBackbone(nn.Module):
    """A narrow ResNet for CPU work on the embedded world.

    Same geometry as the ResNet-50 backbone (stride-2 stem and max-pool,
    block2 at 1/8, dilated block3/block4) at a fraction of the cost. It has
    no ImageNet weights: the offline pipeline pretrains it on the embedded
    pretraining classes (the miniature of ImageNet pretraining), see
    :mod:`canetlib.training.pretrain`.
    """

    def __init__(self, blocks: Sequence[str], widths: Sequence[int] = (32, 64, 128, 256),
                 depth: int = 1) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"resnet-tiny needs 4 widths, got {tuple(widths)}")
        deepest = _deepest(blocks)
        w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, w1, 7, 2, 3, bias=False), nn.BatchNorm2d(w1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1))

        def stage(cin: int, cout: int, stride: int, dilation: int) -> nn.Sequential:
            layers = [_BasicBlock(cin, cout, stride, dilation)]
            layers += [_BasicBlock(cout, cout, 1, dilation) for _ in range(depth - 1)]
            return nn.Sequential(*layers)

        self.layer1 = stage(w1, w1, 1, 1)
        self.layer2 = stage(w1, w2, 2, 1)
        self.layer3 = stage(w2, w3, 1, 2) if deepest >= 3 else None
        self.layer4 = stage(w3, w4, 1, 4) if deepest >= 4 else None
        self.channels = {"block2": w2, "block3": w3, "block4": w4}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    forward = ResNet50Backbone.forward


def _grid_size(feats: dict[str, Tensor]) -> tuple[int, int]:
    smallest = min(feats.values(), key=lambda t: t.shape[-1] * t.shape[-2])
    return int(smallest.shape[-2]), int(smallest.shape[-1])


def _to_grid(x: Tensor, size: tuple[int, int]) -> Tensor:
    return x if tuple(x.shape[-2:]) == size else F.adaptive_avg_pool2d(x, size)


def _load_torchvision(build):  # type: ignore[no-untyped-def]
    """Build a torchvision model; explain the offline route if weights can't be fetched."""
    try:
        return build()
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise RuntimeError(
            "could not load the ImageNet backbone weights from torchvision "
            f"({err.__class__.__name__}: {err}). Without internet use "
            "CANet(pretrained=False), or a shipped offline checkpoint such as "
            "canetlib.model.checkpoint.load_model('synthetic-imagenet-1shot-fold0') (its ImageNet "
            "EfficientNet-Lite0 installs with pip); or copy the weight file into torch's "
            "hub cache (torch.hub.get_dir()/checkpoints)."
        ) from err


def build_backbone(name: str, blocks: Sequence[str], pretrained: bool,
                   widths: Sequence[int] | None = None) -> nn.Module:
    """Build a frozen backbone by name (``resnet50``, ``vgg16``, ``resnet-tiny``,
    ``efficientnet-lite0``)."""
    if name == "resnet50":
        net: nn.Module = ResNet50Backbone(blocks, pretrained)
    elif name == "vgg16":
        net = VGG16Backbone(blocks, pretrained)
    elif name == "efficientnet-lite0":
        # ImageNet weights from a pip package: "pretrained" works offline
        from canetlib.model.efficientnet import EfficientNetLiteBackbone

        net = EfficientNetLiteBackbone(blocks, pretrained)
    elif name == "resnet-tiny":
        if pretrained:
            raise ValueError("resnet-tiny has no ImageNet weights: build it with "
                             "pretrained=False and load a checkpoint (see canetlib.training.pretrain)")
        net = TinyResNetBackbone(blocks, widths or (32, 64, 128, 256))
    else:
        raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")
    freeze(net)
    return net


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients and put BatchNorm in eval mode for good."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    return module


@torch.no_grad()
def count_parameters(module: nn.Module) -> tuple[int, int]:
    """Return (frozen, trainable) parameter counts."""
    frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return frozen, trainable
