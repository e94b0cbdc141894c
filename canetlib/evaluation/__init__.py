"""The few-shot evaluator: every IOM iteration, original-size IoU, no test-set selection.

What it does for each batch of test episodes:

1. brings query and supports to a common model input size (see
   :func:`resolve_input_size`), support masks with nearest-neighbour;
2. runs the batch through :func:`canetlib.model.inference.iteration_maps`
   (the inference path of :meth:`CANet.predict`): the frozen backbone **once
   per image** (:meth:`CANet.encode`, query and supports in one call), then
   only the IOM for every refinement (:meth:`CANet.refine`), collecting the
   logits of every iteration (index 0 = CANet-Init);
3. upsamples each iteration's logits bilinearly to that episode's
   **original** query size, takes the argmax, and feeds one
   :class:`~canetlib.evaluation.metrics.FewShotMeter` per iteration (255 ignored).

Multi-scale testing (paper: query at 0.7, 1 and 1.3, probabilities averaged)
extracts the supports once and the query once per scale.

Unlike the reference code, nothing is *selected* on the test episodes: every
iteration is reported and ``miou`` is always the last iteration's, never the
best one.

Any source works: ``evaluate(load_model(name), make_dataset(source=source, split="test"))``
feeds the images at the size the checkpoint was trained at and returns an
:class:`EvalResult` (``result.miou`` or ``result["miou"]``; ``to_dict()`` for
JSON), with the support-free ``all_objects_miou`` baseline alongside. The code
lives in :mod:`canetlib.evaluation`, one module per job; import from here.
"""

from __future__ import annotations

from canetlib.evaluation.datasets import class_names, dataset_classes
from canetlib.evaluation.loop import Postprocess, evaluate
from canetlib.evaluation.metrics import all_objects_iou, all_objects_miou
from canetlib.evaluation.prototype import (
    BASELINE_FIT_EPISODES,
    BASELINE_FIT_SEED,
    THRESHOLDS,
    fit_prototype_baseline,
    fit_threshold,
)
from canetlib.evaluation.results import EvalResult, SeedsResult
from canetlib.evaluation.seeds import SEED_KEYS, SEED_LIST_KEYS, evaluate_seeds
from canetlib.evaluation.sizing import (
    REFERENCE_INPUT_SIZE,
    Size,
    default_input_size,
    model_input_size,
    resize_episode,
    resolve_input_size,
)
from canetlib.model import MULTI_SCALE
from canetlib.model.outputs import binary_prediction

__all__ = [
    "BASELINE_FIT_EPISODES", "BASELINE_FIT_SEED", "MULTI_SCALE", "REFERENCE_INPUT_SIZE",
    "SEED_KEYS", "SEED_LIST_KEYS", "THRESHOLDS", "EvalResult", "Postprocess", "SeedsResult",
    "Size", "all_objects_iou", "all_objects_miou", "binary_prediction", "class_names",
    "dataset_classes", "default_input_size", "evaluate", "evaluate_seeds",
    "fit_prototype_baseline", "fit_threshold", "model_input_size", "resize_episode",
    "resolve_input_size",
]
