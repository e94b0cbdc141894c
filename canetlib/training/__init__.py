"""Training: the recipe (:func:`canetlib.training.recipe.train`), its configs, the IOM history
memory and the engine under every training loop.

``train(get_config("synthetic-imagenet-1shot", fold=0), "runs/f0")``, with ``train`` from
:mod:`canetlib.training.recipe` and ``get_config`` from :mod:`canetlib.training.configs`.
"""
