"""The parts of :mod:`canetlib.evaluate` (import from there), one job per module.

* :mod:`~canetlib.evaluation.datasets`: test episodes, their classes and names;
* :mod:`~canetlib.evaluation.sizing`: the model input size, resizing and batching;
* :mod:`~canetlib.evaluation.loop`: :func:`evaluate`, the episode loop;
* :mod:`~canetlib.evaluation.results`: :class:`EvalResult` and :class:`SeedsResult`;
* :mod:`~canetlib.evaluation.seeds`: :func:`evaluate_seeds`;
* :mod:`~canetlib.evaluation.prototype`: the training-free yardstick's threshold fit.
"""
