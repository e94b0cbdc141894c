"""Training: the recipe (:func:`train`), its configs, the history memory and the engine.

``train(get_config("synthetic-imagenet-1shot", fold=0), "runs/f0")`` trains one model;
:mod:`canetlib.training.recipe` reads top to bottom as the paper's recipe.
"""

from canetlib.training.configs import CONFIGS, PretrainConfig, TrainConfig, get_config
from canetlib.training.recipe import TrainResult, train

__all__ = ["CONFIGS", "PretrainConfig", "TrainConfig", "TrainResult", "get_config", "train"]
