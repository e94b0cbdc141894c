"""The CANet network and its parts (paper section 4)."""

from canetlib.model.backbone import BACKBONES, BLOCKS, build_backbone, count_parameters
from canetlib.model.canet import (
    FUSIONS,
    MULTI_SCALE,
    CANet,
    CANetOutput,
    EpisodeFeatures,
    Prediction,
)
from canetlib.model.modules import (
    ASPP,
    AttentionFusion,
    DenseComparison,
    FeatureEncoder,
    IterativeOptimization,
    masked_average_pooling,
)

__all__ = [
    "ASPP", "AttentionFusion", "BACKBONES", "BLOCKS", "CANet", "CANetOutput", "DenseComparison",
    "EpisodeFeatures", "FUSIONS", "FeatureEncoder", "IterativeOptimization", "MULTI_SCALE",
    "Prediction", "build_backbone", "count_parameters", "masked_average_pooling",
]
