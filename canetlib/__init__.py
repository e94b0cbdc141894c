"""canetlib: CANet few-shot segmentation (Zhang et al., CVPR 2019), complete and honest.

Import the model with ``from canetlib import CANet``; the metrics live in
:mod:`canetlib.evaluation.metrics`, episodes in :mod:`canetlib.data`.
"""

from canetlib.model import (
    FUSIONS,
    AttentionFusion,
    CANet,
    CANetConfig,
    CANetOutput,
    DenseComparison,
    IterativeOptimization,
    Prediction,
    masked_average_pooling,
)
from canetlib.model.inputs import box_to_mask, mask_to_box

__version__ = "0.1.0"

__all__ = [
    "FUSIONS",
    "AttentionFusion",
    "CANet",
    "CANetConfig",
    "CANetOutput",
    "DenseComparison",
    "IterativeOptimization",
    "Prediction",
    "__version__",
    "box_to_mask",
    "mask_to_box",
    "masked_average_pooling",
]
