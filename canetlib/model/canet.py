"""CANet: the whole network of paper section 4 (Fig. 2 and Fig. 3).

The forward pass is split so that the expensive part runs once per episode:

* :meth:`CANet.extract` runs the frozen backbone (under
  ``torch.inference_mode()``, BatchNorm in eval mode) and the shared encoder, or
  asks :attr:`CANet.extract_cache` inside :func:`~canetlib.model.cache.feature_cache`;
* :meth:`CANet.compare` pools the support prototypes, compares them densely
  with the query and fuses k shots;
* :meth:`CANet.refine` runs only the iterative optimization module, as many
  times as asked, on the cached comparison features.

``forward`` chains the three; :func:`canetlib.model.inference.iteration_maps`
(behind :meth:`CANet.predict`, the evaluator, the segmenter and the book's
widgets) calls the pieces to add IOM iterations without touching the backbone again.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from canetlib.model.backbone import build_backbone, count_parameters
from canetlib.model.cache import FeatureCache
from canetlib.model.config import FUSIONS, MASK_FUSIONS, PAPER_MODEL, CANetConfig
from canetlib.model.inference import iteration_maps
from canetlib.model.inputs import check_episode, check_iterations, check_scales, raw_pixel_hint
from canetlib.model.modules import (
    AttentionFusion,
    DenseComparison,
    FeatureEncoder,
    IterativeOptimization,
    init_head,
    masked_average_pooling,
)
from canetlib.model.outputs import CANetOutput, EpisodeFeatures, Prediction

#: query scales of the paper's multi-scale test (predictions averaged)
MULTI_SCALE = (0.7, 1.0, 1.3)


class CANet(nn.Module):
    """Class-agnostic segmentation network (Zhang et al., CVPR 2019).

    Args:
        pretrained: load ImageNet weights into the backbone (torchvision
            ``IMAGENET1K_V1``). ``False`` gives random weights, for offline use
            and tests; a clear error explains the offline route when the
            weights cannot be fetched.
        backbone, blocks, fusion, width, iterations, dropout, backbone_widths,
            normalise, pairing: the fields of :class:`CANetConfig` (documented
            there; defaults: the paper's model). :meth:`from_config` builds
            from a config; ``model.config`` is the config of a model
            (``model.config.to_dict()``: a checkpoint's ``model_config``).
    """

    def __init__(self, pretrained: bool = True, *, backbone: str = PAPER_MODEL.backbone,
                 blocks: Sequence[str] = PAPER_MODEL.blocks,
                 fusion: str | None = PAPER_MODEL.fusion, width: int = PAPER_MODEL.width,
                 iterations: int = PAPER_MODEL.iterations, dropout: float = PAPER_MODEL.dropout,
                 backbone_widths: Sequence[int] | None = PAPER_MODEL.backbone_widths,
                 normalise: bool = PAPER_MODEL.normalise,
                 pairing: str = PAPER_MODEL.pairing,
                 attention_pool: str = PAPER_MODEL.attention_pool) -> None:
        super().__init__()
        config = CANetConfig(backbone=backbone, blocks=tuple(blocks), fusion=fusion, width=width,
                             iterations=iterations, dropout=dropout,
                             backbone_widths=tuple(backbone_widths) if backbone_widths else None,
                             normalise=normalise, pairing=pairing,
                             attention_pool=attention_pool)
        #: what this model is
        self.config = config
        self.blocks = config.blocks
        self.fusion = config.fusion
        self.iterations = config.iterations
        self.backbone = build_backbone(config.backbone, self.blocks, pretrained,
                                       config.backbone_widths)
        channels: dict[str, int] = self.backbone.channels
        in_channels = sum(channels[b] for b in self.blocks)
        self.encoder = FeatureEncoder(in_channels, width, dropout, config.normalise)
        self.comparison = DenseComparison(width, dropout, pairing)
        self.attention = (AttentionFusion(width, dropout, attention_pool)
                          if fusion == "attention" else None)
        self.iom = IterativeOptimization(width, dropout)
        for head in (self.encoder, self.comparison, self.attention, self.iom):
            if head is not None:
                init_head(head)
        self._channels_last = False
        #: the cache :meth:`extract` consults, set by :func:`~canetlib.model.cache.feature_cache`
        self.extract_cache: FeatureCache | None = None

    @classmethod
    def from_config(cls, config: CANetConfig, pretrained: bool = True) -> CANet:
        """Build the model ``config`` describes (``pretrained`` as in :class:`CANet`)."""
        return cls(pretrained, **config.as_kwargs())

    # -- modes and devices -------------------------------------------------
    def train(self, mode: bool = True) -> CANet:
        """Switch the head's mode; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def use_channels_last(self, enabled: bool = True) -> CANet:
        """Store weights and feed images as channels_last (faster convs on CUDA)."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.to(memory_format=fmt)
        self._channels_last = enabled
        return self

    def use_fusion(self, fusion: str | None) -> CANet:
        """Switch the k-shot fusion in place (Table 5 tests one model with each).

        Only how k supports are combined changes; the weights stay. ``"attention"``
        needs the attention branch, i.e. a model built (and trained) with it.
        """
        config = self.config.replace(fusion=fusion)  # validates the name
        if config.fusion == "attention" and self.attention is None:
            raise ValueError("this model has no attention branch; choose fusion from None, "
                             "'feature-avg', 'mask-avg', 'mask-or'")
        self.config, self.fusion = config, config.fusion
        return self

    def parameter_counts(self) -> tuple[int, int]:
        """``(frozen, trainable)`` parameter counts."""
        return count_parameters(self)

    # -- the three stages --------------------------------------------------
    def extract(self, images: Tensor) -> Tensor:
        """Frozen backbone + shared encoder: ``(N, 3, H, W)`` -> ``(N, width, H/8, W/8)``.

        :attr:`extract_cache`, when set, answers instead (the same features, each
        distinct image computed once by :meth:`compute_features`).
        """
        if self.extract_cache is not None:
            return self.extract_cache(images)
        return self.compute_features(images)

    def compute_features(self, images: Tensor) -> Tensor:
        """:meth:`extract` without the cache.

        The backbone runs under ``torch.inference_mode()``; when gradients are
        needed for the encoder, its output is cloned out of inference mode.
        """
        if self._channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            chosen = self._backbone_features(images)
        if torch.is_grad_enabled():
            chosen = [t.clone() for t in chosen]
        return self.encoder(chosen)

    def _backbone_features(self, images: Tensor) -> list[Tensor]:
        """The chosen blocks' features, on a CPU in chunks of about :data:`CPU_CHUNK_PIXELS`.

        Small chunks keep the early activations in the CPU's cache; each image's features
        do not depend on the others', so the results are the same. On CUDA the whole batch
        goes in one call.
        """
        n, (h, w) = images.shape[0], images.shape[-2:]
        step = n if images.device.type != "cpu" else max(1, CPU_CHUNK_PIXELS // (h * w))
        parts = [self.backbone(images[i:i + step]) for i in range(0, n, step)]
        if len(parts) == 1:
            return [parts[0][b] for b in self.blocks]
        return [torch.cat([p[b] for p in parts]) for b in self.blocks]

    def prototypes(self, support_feats: Tensor, support_masks: Tensor) -> Tensor:
        """Masked average pooling of ``(B*k, C, h, w)`` features -> ``(B, k, C)``."""
        b, k = support_masks.shape[:2]
        fg = (support_masks.flatten(0, 1) == 1).to(support_feats.dtype)
        return masked_average_pooling(support_feats, fg).view(b, k, -1)

    def compare(self, query_feats: Tensor, prototypes: Tensor) -> EpisodeFeatures:
        """Dense comparison of each query with its k prototypes, then k-shot fusion."""
        b, k, c = prototypes.shape
        self._check_shots(k)
        query = query_feats.repeat_interleave(k, dim=0) if k > 1 else query_feats
        paired = DenseComparison.pair(query, prototypes.reshape(b * k, c),
                                      self.comparison.pairing)
        compared = self.comparison(paired)
        if k == 1:
            ones = compared.new_ones(b, 1) if self.fusion == "attention" else None
            return EpisodeFeatures(compared, 1, ones)
        if self.fusion in MASK_FUSIONS:
            return EpisodeFeatures(compared, k, None)
        stacked = compared.view(b, k, *compared.shape[1:])
        if self.fusion == "feature-avg":
            return EpisodeFeatures(stacked.mean(dim=1), 1, None)
        assert self.attention is not None
        similarity = None
        if self.attention.pool == "similar":
            similarity = F.cosine_similarity(query, prototypes.reshape(b * k, c, 1, 1), dim=1)
        weights = self.attention(paired, k, similarity)
        return EpisodeFeatures(AttentionFusion.fuse(stacked, weights), 1, weights)

    def refine(self, feats: EpisodeFeatures, iterations: int,
               history: Tensor | None = None) -> CANetOutput:
        """Run the IOM ``iterations + 1`` times on cached comparison features.

        Args:
            feats: output of :meth:`compare`.
            iterations: refinements after the first pass (0 = CANet-Init only).
            history: ``(B, 2, h, w)`` probabilities fed to the first pass
                (training feeds last epoch's prediction); ``None`` = empty mask.
        """
        check_iterations(iterations)
        chunk = _head_chunk(feats)
        if chunk is not None:  # CPU inference: a few episodes at a time (same numbers, faster)
            return self._refine_in_chunks(feats, iterations, history, chunk)
        x = feats.features
        if history is None:
            y = x.new_zeros(x.shape[0], 2, *x.shape[-2:])
        else:
            y = history.repeat_interleave(feats.groups, dim=0) if feats.groups > 1 else history
        # the history-free part of the IOM's first conv is the same in every pass
        x_part = self.iom.input_part(x) if iterations > 0 else None
        outs: list[Tensor] = []
        for _ in range(iterations + 1):
            logits = self.iom(x, y, x_part)
            y = torch.softmax(logits.float(), dim=1)
            outs.append(self._fuse_chains(logits, feats.groups))
        return CANetOutput(outs, feats.attention)

    def _refine_in_chunks(self, feats: EpisodeFeatures, iterations: int,
                          history: Tensor | None, episodes: int) -> CANetOutput:
        """:meth:`refine` on ``episodes`` episodes at a time (see :data:`CPU_HEAD_CHUNK`)."""
        g, n = feats.groups, feats.features.shape[0] // feats.groups
        outs = []
        for i in range(0, n, episodes):
            part = EpisodeFeatures(feats.features[i * g:(i + episodes) * g], g, None)
            hist = history[i:i + episodes] if history is not None else None
            outs.append(self.refine(part, iterations, hist).logits)
        return CANetOutput([torch.cat(its) for its in zip(*outs)], feats.attention)

    def _fuse_chains(self, logits: Tensor, groups: int) -> Tensor:
        """Mask-Avg / Mask-OR of Table 5: fuse k per-support predictions."""
        if groups == 1:
            return logits
        probs = torch.softmax(logits.float(), dim=1)
        probs = probs.view(-1, groups, *probs.shape[1:])
        if self.fusion == "mask-avg":
            fused = probs.mean(dim=1)
        else:  # mask-or: foreground where any support's prediction says so
            fg = probs[:, :, 1].amax(dim=1)
            fused = torch.stack([1.0 - fg, fg], dim=1)
        return fused.clamp_min(1e-6).log()

    # -- whole passes ------------------------------------------------------
    def encode(self, query: Tensor, supports: Tensor, support_masks: Tensor) -> EpisodeFeatures:
        """Backbone once per image (query and k supports in one batch when sizes match)."""
        b = supports.shape[0]
        flat = supports.flatten(0, 1)
        if query.shape[-2:] == flat.shape[-2:]:
            feats = self.extract(torch.cat([query, flat], dim=0))
            qf, sf = feats[:b], feats[b:]
        else:
            qf, sf = self.extract(query), self.extract(flat)
        return self.compare(qf, self.prototypes(sf, support_masks))

    def forward(self, query: Tensor, supports: Tensor, support_masks: Tensor,
                iterations: int | None = None, history: Tensor | None = None,
                check: bool = True) -> CANetOutput:
        """Segment the support class in the query.

        Args:
            query: ``(B, 3, H, W)`` normalised images.
            supports: ``(B, k, 3, Hs, Ws)`` (or ``(B, 3, Hs, Ws)`` for k = 1).
            support_masks: ``(B, k, Hs, Ws)`` (or ``(B, Hs, Ws)``), values 0/1/255.
            iterations: IOM refinements; default 0 in training mode (one pass
                on ``history``), ``self.iterations`` in eval mode.
            history: first-pass probabilities ``(B, 2, h, w)``, see :meth:`refine`.
            check: validate the inputs (clear ``ValueError`` on bad episodes).
        """
        supports, support_masks = _as_kshot(supports, support_masks)
        if check:
            check_episode(query, supports, support_masks)
            self._check_shots(supports.shape[1])
        if iterations is None:
            iterations = 0 if self.training else self.iterations
        return self.refine(self.encode(query, supports, support_masks), iterations, history)

    @torch.inference_mode()
    def predict(self, query: Tensor, supports: Tensor, support_masks: Tensor,
                iterations: int | None = None, scales: Sequence[float] = (1.0,),
                size: Sequence[int] | None = None) -> Prediction:
        """Inference with optional multi-scale testing (query at 0.7/1/1.3, averaged).

        Probabilities are upsampled to ``size`` (default: the query's size)
        and averaged over scales for every iteration. Supports go through the
        backbone once whatever the number of scales (see
        :func:`canetlib.model.inference.iteration_maps`).
        """
        supports, support_masks = _as_kshot(supports, support_masks)
        check_episode(query, supports, support_masks)
        self._check_shots(supports.shape[1])
        self._check_dtype(query, supports)
        iterations = self.iterations if iterations is None else iterations
        check_iterations(iterations)
        size = _output_size(size) if size is not None else tuple(query.shape[-2:])
        if not isinstance(scales, Sequence):
            raise ValueError(  # noqa: TRY004 - bad input, reported as ValueError like the rest
                f"scales must be a sequence of numbers such as (1.0,) or "
                f"(0.7, 1.0, 1.3), got {scales!r}")
        check_scales(tuple(scales), *query.shape[-2:])
        _warn_raw_pixels(query, supports)
        was_training = self.training
        self.eval()  # inference: no dropout, whatever mode the caller left the model in
        try:
            out = iteration_maps(self, query, supports, support_masks, iterations, scales, size)
        finally:
            self.train(was_training)
        return Prediction(out.maps, out.attention)

    def _check_dtype(self, query: Tensor, supports: Tensor) -> None:
        """Refuse float64 images for a model whose weights are not float64."""
        weights = next(self.parameters()).dtype
        for name, images in (("query image", query), ("support images", supports)):
            if images.dtype == torch.float64 and weights != torch.float64:
                raise ValueError(f"{name}: a float64 tensor, but the model's weights are "
                                 f"{str(weights).removeprefix('torch.')}; convert with .float()")

    def _check_shots(self, k: int) -> None:
        if k < 1:
            raise ValueError("an episode needs at least one support")
        if k > 1 and self.fusion is None:
            raise ValueError(
                f"this is a 1-shot CANet (fusion=None) but the episode has {k} supports; "
                f"build CANet(fusion={'|'.join(map(repr, FUSIONS[1:]))}) for k-shot")


def _output_size(size: Sequence[int]) -> tuple[int, int]:
    """``size`` of :meth:`CANet.predict`: ``(H, W)``, two integers >= 1."""
    if not (isinstance(size, Sequence) and len(size) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
            for v in size)):
        raise ValueError(f"size must be (H, W), two integers >= 1 (the size of the output "
                         f"probabilities; default the query's), got {size!r}")
    return int(size[0]), int(size[1])


def _warn_raw_pixels(query: Tensor, supports: Tensor) -> None:
    """Warn once when the images look like raw pixels instead of normalised ones."""
    for name, images in (("query", query), ("support", supports)):
        hint = raw_pixel_hint(images)
        if hint is not None:
            warnings.warn(f"CANet.predict: the {name} images hold values in {hint}, like raw "
                          "pixels; the model expects ImageNet-normalised images, so the mask "
                          "will be worse. Normalise with canetlib.data.episodes.image_to_tensor "
                          "(uint8 (H, W, 3) -> normalised (3, H, W))", UserWarning, stacklevel=4)
            return


#: IOM chains a CPU inference pass refines at once: the head's activations for more
#: chains per call fall out of the CPU's cache (the results are the same)
CPU_HEAD_CHUNK = 8


def _head_chunk(feats: EpisodeFeatures) -> int | None:
    """Episodes per IOM call for :meth:`CANet.refine`, or ``None`` for one call
    (CUDA, training, or a batch that already fits)."""
    x = feats.features
    episodes = max(1, CPU_HEAD_CHUNK // feats.groups)
    if (x.device.type != "cpu" or torch.is_grad_enabled()
            or episodes * feats.groups >= x.shape[0]):
        return None  # a chunk would hold the whole batch: no recursion either
    return episodes


#: pixels a CPU backbone call takes at once (one 321 x 321 image, eight at 128 x 128)
CPU_CHUNK_PIXELS = 131_072


def _as_kshot(supports: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Accept 1-shot shorthands ``(B, 3, H, W)`` / ``(B, H, W)``."""
    if torch.is_tensor(supports) and supports.dim() == 4:
        supports = supports.unsqueeze(1)
    if torch.is_tensor(masks) and masks.dim() == 3:
        masks = masks.unsqueeze(1)
    return supports, masks
