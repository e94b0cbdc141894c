"""Training: the recipe, its configs, the history memory and the engine that runs them."""
