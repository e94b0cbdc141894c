"""A training-free yardstick: prototype matching on the frozen backbone's features.

What CANet's dense comparison learns to do (section 4.1) can be done without
any learning: pool the support's features over its mask into a prototype
(:func:`~canetlib.model.modules.masked_average_pooling`, the prototypical-network
idea), compare the prototype with every query location by cosine
similarity, and call a location foreground where the similarity exceeds one
threshold. The threshold is the matcher's only parameter; it is chosen on
episodes of the *training* classes (:func:`canetlib.evaluation.fit_threshold`), never on test
episodes.

:class:`PrototypeMatcher` has the interface of :class:`~canetlib.CANet` that the
evaluator uses (``encode``, ``extract``, ``prototypes``, ``compare``,
``refine``), so :func:`canetlib.evaluation.evaluate` measures it exactly as it
measures CANet, in the same run if wanted. It has no IOM: every "iteration"
is the same map. For k shots the k prototypes are averaged.

Each backbone level is compared on its own and the similarities averaged, so a
level with many channels or large activations does not drown the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from canetlib.model.cache import FeatureCache
from canetlib.model.canet import CANet
from canetlib.model.modules import masked_average_pooling
from canetlib.model.outputs import CANetOutput, EpisodeFeatures

#: sharpness of the logits ``gain * (similarity - threshold)``; the argmax does not depend on it
_GAIN = 20.0


class PrototypeMatcher(nn.Module):
    """Masked average pooling + cosine similarity + a threshold; no trained weight.

    Args:
        backbone: a frozen backbone returning a dict of feature maps (e.g. a
            :class:`~canetlib.CANet`'s ``backbone``; it is shared, not copied).
        blocks: which of its feature levels to compare (default block2 + block3).
        threshold: cosine similarity above which a location is foreground.
        mask_resize: how the support mask reaches the feature grid: ``"bilinear"``
            sampling as :func:`~canetlib.model.modules.masked_average_pooling` (the
            paper's), or ``"area"``, the fraction of each grid cell that is foreground
            (bilinear ``align_corners=True`` reads single pixels and can miss thin objects).
    """

    fusion = "prototype-avg"

    def __init__(self, backbone: nn.Module, blocks: Sequence[str] = ("block2", "block3"),
                 threshold: float = 0.5, mask_resize: str = "bilinear") -> None:
        super().__init__()
        self.backbone = backbone
        self.blocks = tuple(blocks)
        self.threshold = float(threshold)
        if mask_resize not in ("bilinear", "area"):
            raise ValueError(f"mask_resize must be 'bilinear' or 'area', got {mask_resize!r}")
        self.mask_resize = mask_resize
        self._channels_last = False
        #: the cache :meth:`extract` consults, set by :func:`~canetlib.model.cache.feature_cache`
        self.extract_cache: FeatureCache | None = None

    @classmethod
    def from_model(cls, model: nn.Module, threshold: float = 0.5) -> PrototypeMatcher:
        """The matcher on a CANet's own frozen backbone and compared blocks."""
        return cls(model.backbone, model.blocks, threshold)

    def train(self, mode: bool = True) -> PrototypeMatcher:
        super().train(mode)
        self.backbone.eval()
        return self

    def use_channels_last(self, enabled: bool = True) -> PrototypeMatcher:
        self._channels_last = enabled
        return self

    # -- the CANet interface the evaluator uses ------------------------------------
    def extract(self, images: Tensor) -> Tensor:
        """Per-level L2-normalised features, concatenated: ``(N, sum C, h, w)``.

        :attr:`extract_cache`, when set, answers instead (as in :meth:`CANet.extract`).
        """
        if self.extract_cache is not None:
            return self.extract_cache(images)
        return self.compute_features(images)

    def compute_features(self, images: Tensor) -> Tensor:
        """:meth:`extract` without the cache."""
        with torch.inference_mode():
            feats = self.backbone(images)
            return torch.cat([F.normalize(feats[b].float(), dim=1) for b in self.blocks], dim=1)

    def _split(self, x: Tensor) -> list[Tensor]:
        sizes = [int(self.backbone.channels[b]) for b in self.blocks]
        return list(torch.split(x, sizes, dim=1))

    def prototypes(self, support_feats: Tensor, support_masks: Tensor) -> Tensor:
        """Masked average pooling per support: ``(B*k, C, h, w)`` -> ``(B, k, C)``."""
        b, k = support_masks.shape[:2]
        fg = (support_masks.flatten(0, 1) == 1).to(support_feats.dtype)
        if self.mask_resize == "area":  # fraction of each grid cell that is foreground
            fg = F.adaptive_avg_pool2d(fg[:, None], support_feats.shape[-2:])[:, 0]
        return masked_average_pooling(support_feats, fg).view(b, k, -1)

    def similarity(self, query_feats: Tensor, prototypes: Tensor) -> Tensor:
        """Mean over levels of the cosine between each query location and the mean prototype.

        ``(B, C, h, w)`` and ``(B, k, C)`` -> ``(B, h, w)`` in [-1, 1].
        """
        proto = prototypes.mean(dim=1)
        sims = [F.cosine_similarity(q, p[:, :, None, None], dim=1, eps=1e-6)
                for q, p in zip(self._split(query_feats), self._split(proto))]
        return torch.stack(sims).mean(dim=0)

    def compare(self, query_feats: Tensor, prototypes: Tensor) -> EpisodeFeatures:
        return EpisodeFeatures(self.similarity(query_feats, prototypes)[:, None], 1, None)

    def refine(self, feats: EpisodeFeatures, iterations: int,
               history: Tensor | None = None) -> CANetOutput:
        """Background/foreground logits ``(B, 2, h, w)``; the same for every iteration."""
        score = _GAIN * (feats.features - self.threshold)
        logits = torch.cat([torch.zeros_like(score), score], dim=1)
        return CANetOutput([logits] * (iterations + 1), None)

    #: backbone once per image, query and supports batched: CANet's own encode
    encode = CANet.encode

    def forward(self, query: Tensor, supports: Tensor, support_masks: Tensor,
                iterations: int = 0) -> CANetOutput:
        if supports.dim() == 4:
            supports, support_masks = supports[:, None], support_masks[:, None]
        return self.refine(self.encode(query, supports, support_masks), iterations)
