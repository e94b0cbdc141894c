"""The CANet head: dense comparison, iterative optimization, attention fusion.

Paper sections 4.1 (dense comparison module), 4.2 (iterative optimization
module, eq. 1) and 4.3 (attention for k-shot, eq. 2). Where the paper is
silent we follow the reference implementation: dilation 2
in the encoder and comparison convolutions, ``Dropout2d(0.5)`` after the head
convolutions, pre-activation residual blocks without BatchNorm, N(0, 0.01)
weight initialisation, logits out (softmax outside the classifier).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: the reference adds this to the mask area before dividing (avoids 0/0)
MAP_EPS = 5e-4


def conv_block(cin: int, cout: int, kernel: int = 3, dilation: int = 1,
               dropout: float = 0.5) -> nn.Sequential:
    """Conv -> ReLU -> Dropout2d, the reference's unit for every head conv."""
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=True),
                         nn.ReLU(inplace=True), nn.Dropout2d(dropout))


def masked_average_pooling(features: Tensor, mask: Tensor, eps: float = MAP_EPS) -> Tensor:
    """Average ``features`` over the foreground of ``mask`` (section 4.1).

    The binary mask is bilinearly resized to the feature grid, multiplied
    with the features, summed, and divided by the mask's area (+ ``eps``).

    Args:
        features: ``(N, C, h, w)``.
        mask: ``(N, H, W)`` or ``(N, 1, H, W)`` with values in [0, 1].
    Returns:
        ``(N, C)`` support prototypes.
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    mask = mask.to(features.dtype)
    if mask.shape[-2:] != features.shape[-2:]:
        mask = F.interpolate(mask, size=features.shape[-2:], mode="bilinear", align_corners=True)
    area = mask.sum(dim=(2, 3))
    return (features * mask).sum(dim=(2, 3)) / (area + eps)


class FeatureEncoder(nn.Module):
    """Concatenate the chosen backbone blocks and encode to ``width`` channels.

    Paper: "Features after block2 and block3 are concatenated and encoded to
    256 dimensions by 3x3 convolutions." Reference: dilation 2, Dropout2d.

    ``normalise=True`` (not in the paper) first scales every block's feature
    vector to unit length at each location, so that the encoder sees the
    direction of a feature (what the cosine of the training-free matcher
    compares) and no block or location dominates by magnitude, which matters for
    backbones whose stage outputs are linear (signed, unbounded), such as
    EfficientNet-Lite0.
    """

    def __init__(self, in_channels: int, width: int = 256, dropout: float = 0.5,
                 normalise: bool = False) -> None:
        super().__init__()
        self.normalise = normalise
        self.conv = conv_block(in_channels, width, 3, dilation=2, dropout=dropout)

    def forward(self, feats: list[Tensor]) -> Tensor:
        if self.normalise:
            feats = [F.normalize(f, dim=1) for f in feats]
        return self.conv(torch.cat(feats, dim=1))


#: how the dense comparison pairs query features with the prototype
PAIRINGS = ("concat", "relational")


class DenseComparison(nn.Module):
    """Compare every query location with the support prototype (section 4.1).

    The prototype from :func:`masked_average_pooling` is tiled over the query
    grid, concatenated with the query features (``2 * width`` channels) and
    compared by a 3x3 convolution with ``width`` filters (dilation 2, as in the
    reference).

    ``pairing="relational"`` (not in the paper) feeds ``[q * p, |q - p|]``
    instead of ``[q, p]``: the same number of channels, but only *relations*
    between query and prototype reach the head, never the query's features
    alone, so the head cannot segment a class it recognises in the query
    without looking at the support (the shortcut that makes a head trained
    on few classes fail on new ones).
    """

    def __init__(self, width: int = 256, dropout: float = 0.5,
                 pairing: str = "concat") -> None:
        super().__init__()
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.pairing = pairing
        self.compare = conv_block(2 * width, width, 3, dilation=2, dropout=dropout)

    @staticmethod
    def pair(query: Tensor, prototype: Tensor, pairing: str = "concat") -> Tensor:
        """Pair query features ``(N, C, h, w)`` with a tiled prototype ``(N, C)``:
        ``[q, p]`` (paper) or ``[q * p, |q - p|]`` (``pairing="relational"``)."""
        tiled = prototype[:, :, None, None].expand(-1, -1, *query.shape[-2:])
        if pairing == "relational":
            return torch.cat([query * tiled, (query - tiled).abs()], dim=1)
        return torch.cat([query, tiled], dim=1)

    def forward(self, paired: Tensor) -> Tensor:
        return self.compare(paired)


#: how the attention branch turns its score map into one ``lambda_i`` (``AttentionFusion``)
ATTENTION_POOLS = ("mean", "similar")
#: ``pool="similar"``: the share of the branch's cells, those most like the prototype, it averages
SIMILAR_SHARE = 0.1


class AttentionFusion(nn.Module):
    """Attention weights over k supports, eq. (2) (section 4.3, Fig. 3).

    Runs parallel to the comparison convolution on the same paired input: a
    3x3 conv with ``width`` filters and 3x3 max-pooling, then a 3x3 conv to
    one channel and global average pooling give a scalar ``lambda_i`` per
    support; a softmax over the k supports normalises them, and the output
    is the weighted sum of the k comparison features. The paper gives no
    pooling stride; we use stride 2 (padding 1). This branch was never
    released with the reference code.

    ``pool="similar"`` departs from the paper: instead of the whole grid, the score map is
    averaged over the ``SIMILAR_SHARE`` of its cells where the query is most similar (cosine)
    to support ``i``'s prototype, the likely object region (same weights, one option).
    """

    def __init__(self, width: int = 256, dropout: float = 0.5, pool: str = "mean") -> None:
        super().__init__()
        if pool not in ATTENTION_POOLS:
            raise ValueError(f"attention pool must be one of {ATTENTION_POOLS}, got {pool!r}")
        self.pool = pool
        self.branch = nn.Sequential(
            conv_block(2 * width, width, 3, dropout=dropout),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(width, 1, 3, padding=1, bias=True),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, paired: Tensor, shots: int, similarity: Tensor | None = None) -> Tensor:
        """Softmax-normalised weights ``(B, k)`` from paired inputs ``(B*k, 2C, h, w)``
        (``similarity``: ``(B*k, h, w)`` query-prototype cosines, for ``pool="similar"``)."""
        if self.pool == "mean":
            lam = self.branch(paired).flatten(1)
        else:
            lam = _pool_where_similar(self.branch[:-1](paired), similarity)
        return torch.softmax(lam.float().view(-1, shots), dim=1).to(paired.dtype)

    @staticmethod
    def fuse(compared: Tensor, weights: Tensor) -> Tensor:
        """Weighted sum of comparison features ``(B, k, C, h, w)`` -> ``(B, C, h, w)``."""
        return (compared * weights[:, :, None, None, None]).sum(dim=1)


def _pool_where_similar(scores: Tensor, similarity: Tensor | None) -> Tensor:
    """Mean of ``scores`` ``(N, 1, h', w')`` over the cells where ``similarity`` ``(N, h, w)``,
    max-pooled to the branch's grid, is highest (``SIMILAR_SHARE`` of them): ``(N, 1)``."""
    if similarity is None:
        raise ValueError('attention pool "similar" needs the query-prototype similarity map')
    sim = F.max_pool2d(similarity[:, None].float(), 3, stride=2, padding=1)
    sim = sim.flatten(1)
    top = sim.topk(max(1, round(SIMILAR_SHARE * sim.shape[1])), dim=1).indices
    return scores.flatten(1).gather(1, top).mean(dim=1, keepdim=True)


class ResidualBlock(nn.Module):
    """Pre-activation residual unit without BatchNorm: ReLU, conv, ReLU, conv."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(cin, width, 3, padding=1, bias=True),
            nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab v3 as CANet uses it (section 4.2).

    Four parallel branches (a 1x1 conv and 3x3 convs with rates 6, 12, 18)
    plus the image-level branch (global average pooling, 1x1 conv, bilinear
    upsampling), concatenated (5 x width) and fused by a 1x1 conv.
    """

    def __init__(self, width: int = 256, rates: tuple[int, ...] = (6, 12, 18),
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.image_pool = conv_block(width, width, 1, dropout=dropout)
        self.branches = nn.ModuleList(
            [conv_block(width, width, 1, dropout=dropout)]
            + [conv_block(width, width, 3, dilation=r, dropout=dropout) for r in rates])
        self.fuse = conv_block(width * (len(rates) + 2), width, 1, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True))
        outs = [pooled.expand(-1, -1, *x.shape[-2:])] + [_branch(b, x) for b in self.branches]
        return self.fuse(torch.cat(outs, dim=1))


def _branch(block: nn.Module, x: Tensor) -> Tensor:
    """One ASPP branch, skipping the kernel taps that can only see zero padding.

    A 3x3 convolution with dilation ``d >= H`` (padding ``d``) reads rows
    ``y - d`` and ``y + d``, which lie in the padding for every output row
    ``y``: only the kernel's middle row contributes (columns likewise). On the
    embedded world's 16 x 16 grid (128 px input) the rate-18 branch is thus a
    1x1 convolution: the same result up to float rounding at a ninth of the
    cost (on PASCAL's 41 x 41 grid nothing changes). Gradients reach the used
    taps only, as in the full convolution (the others multiply zeros).
    """
    assert isinstance(block, nn.Sequential)
    conv = block[0]
    assert isinstance(conv, nn.Conv2d)
    (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
    h, w = x.shape[-2:]
    rows = kh == 3 and dh >= h and conv.padding[0] == dh
    cols = kw == 3 and dw >= w and conv.padding[1] == dw
    if not (rows or cols) or conv.stride != (1, 1) or conv.groups != 1:
        return block(x)
    weight = conv.weight[:, :, 1:2] if rows else conv.weight
    weight = weight[:, :, :, 1:2] if cols else weight
    padding = (0 if rows else conv.padding[0], 0 if cols else conv.padding[1])
    out = F.conv2d(x, weight.contiguous(), conv.bias, padding=padding, dilation=conv.dilation)
    for layer in block[1:]:
        out = layer(out)
    return out


class IterativeOptimization(nn.Module):
    """One pass of the iterative optimization module, eq. (1) (section 4.2).

    ``M_t = x + F(x, y_{t-1})`` where F concatenates the comparison features
    ``x`` with the previous 2-channel probability map and applies two 3x3
    convolutions; two vanilla residual blocks and ASPP follow, and a 1x1
    classifier gives background/foreground logits. The first pass receives
    an all-zero history (the "empty mask").
    """

    def __init__(self, width: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.history = ResidualBlock(width + 2, width)
        self.residual = nn.ModuleList([ResidualBlock(width, width) for _ in range(2)])
        self.aspp = ASPP(width, dropout=dropout)
        self.classifier = nn.Conv2d(width, 2, 1, bias=True)

    def input_part(self, x: Tensor) -> Tensor:
        """The part of F's first convolution that does not depend on the history.

        F starts with ReLU and a 3x3 conv over ``cat(x, y)``; ReLU acts per
        channel, so that conv splits exactly into ``W_x * ReLU(x) + b`` plus
        ``W_y * ReLU(y)``. The first term is the same in every IOM pass of an
        episode: :meth:`CANet.refine` computes it once and passes it as
        ``x_part`` (the result equals the plain pass up to float rounding).
        """
        conv = self._first_conv()
        w_x = conv.weight[:, : x.shape[1]].contiguous()  # sliced weights: oneDNN needs them dense
        return F.conv2d(F.relu(x), w_x, conv.bias, padding=1)

    def _first_conv(self) -> nn.Conv2d:
        conv = self.history.body[1]
        assert isinstance(conv, nn.Conv2d)
        return conv

    def forward(self, x: Tensor, history: Tensor, x_part: Tensor | None = None) -> Tensor:
        """Logits ``(B, 2, h, w)`` from features ``x`` and the previous probabilities.

        ``x_part``: :meth:`input_part` of ``x``, when cached across passes.
        """
        if history.shape[-2:] != x.shape[-2:]:
            history = F.interpolate(history, size=x.shape[-2:], mode="bilinear",
                                    align_corners=True)
        history = history.to(x.dtype)
        if x_part is None:
            out = x + self.history(torch.cat([x, history], dim=1))
        else:
            # the history's share of the first conv; then the rest of F (ReLU, conv)
            w_y = self._first_conv().weight[:, x.shape[1]:].contiguous()
            h = x_part + F.conv2d(F.relu(history), w_y, padding=1)
            out = x + self.history.body[3](self.history.body[2](h))
        for block in self.residual:
            out = out + block(out)
        return self.classifier(self.aspp(out))


def init_head(module: nn.Module, std: float = 0.01) -> None:
    """Initialise every conv as the reference does: weights N(0, std), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
