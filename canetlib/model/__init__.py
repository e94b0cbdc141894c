"""The CANet network and its parts (paper section 4)."""

from canetlib.model.backbone import BACKBONES, BLOCKS, build_backbone, count_parameters
from canetlib.model.canet import MULTI_SCALE, CANet
from canetlib.model.config import FUSIONS, MODEL_FIELDS, PAPER_MODEL, CANetConfig
from canetlib.model.inference import IterationMaps, iteration_maps
from canetlib.model.modules import (
    ASPP,
    AttentionFusion,
    DenseComparison,
    FeatureEncoder,
    IterativeOptimization,
    masked_average_pooling,
)
from canetlib.model.outputs import CANetOutput, EpisodeFeatures, Prediction, binary_prediction

__all__ = [
    "ASPP",
    "BACKBONES",
    "BLOCKS",
    "FUSIONS",
    "MODEL_FIELDS",
    "MULTI_SCALE",
    "PAPER_MODEL",
    "AttentionFusion",
    "CANet",
    "CANetConfig",
    "CANetOutput",
    "DenseComparison",
    "EpisodeFeatures",
    "FeatureEncoder",
    "IterationMaps",
    "IterativeOptimization",
    "Prediction",
    "binary_prediction",
    "build_backbone",
    "count_parameters",
    "iteration_maps",
    "masked_average_pooling",
]
