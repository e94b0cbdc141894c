"""The IOM iteration explorer of chapter 4: slide through iterations 0..N of a few episodes.

Every episode is run once up front (:func:`canetlib.teaching.widgets.runs.run_episode`),
so moving a slider only redraws :func:`canetlib.teaching.visual.plot_iteration` for the
chosen episode and iteration; the caption lists the IoU of every iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from canetlib.model import CANet
from canetlib.teaching import visual
from canetlib.teaching.widgets.explorer import (
    Explorer,
    episode_heading,
    has_ground_truth,
    slider,
    source_class_names,
)
from canetlib.teaching.widgets.key import GROUND_TRUTH, IGNORED, PREDICTION, colour_key
from canetlib.teaching.widgets.runs import EpisodeRun, InputSize, Item, run_episode, run_first
from canetlib.teaching.widgets.static import Control, State

__all__ = ["IterationExplorer"]


class IterationExplorer(Explorer):
    """Slide through IOM iterations 0..N of a few episodes (paper section 4.2).

    Shows the foreground probability, the predicted mask with its IoU and
    the ground truth at the chosen iteration, and lists the IoU of every
    iteration (the chosen one in bold); iteration 0 is CANet-Init. Two
    sliders: ``episode`` (only when there are several) and ``iteration``.

    Args:
        episodes: the episode dicts shown (query image and mask are used).
        runs: one :class:`EpisodeRun` per episode (see :func:`run_episode`).
        class_names: names of class ids ``1..n`` for the caption.
    """

    static_name = "iterations"

    def __init__(self, episodes: Sequence[Item], runs: Sequence[EpisodeRun],
                 class_names: Sequence[str] | None = None) -> None:
        iterations = _iterations(episodes, runs)
        super().__init__()
        self.iterations = iterations
        self.episodes = list(episodes)
        self.runs = list(runs)
        self.class_names = class_names
        self.episode_slider = slider("episode", len(self.episodes))
        self.slider = slider("iteration", self.iterations + 1)
        self.episode_slider.observe(self._on_change, names="value")
        self.slider.observe(self._on_change, names="value")
        controls = [self.slider] if len(self.episodes) == 1 else [self.episode_slider,
                                                                   self.slider]
        self.widget = self._layout(controls)
        truth = [GROUND_TRUTH, IGNORED] if has_ground_truth(self.episodes) else []
        self.key = colour_key([PREDICTION, *truth], probability=True)
        self.shown: tuple[int, int] = (-1, -1)
        self._draw()

    @classmethod
    def from_model(cls, model: CANet, episodes: Any, count: int | None = None,
                   iterations: int | None = None, input_size: InputSize = None
                   ) -> IterationExplorer:
        """Run ``model`` once on each of the first ``count`` episodes of a dataset or list.

        ``input_size`` defaults to the evaluator's choice: the model's own size, else
        the dataset's default (:func:`~canetlib.teaching.widgets.runs.widget_input_size`).
        """
        items, runs = run_first(model, episodes, count, iterations, input_size)
        return cls(items, runs, source_class_names(episodes))

    @classmethod
    def from_episode(cls, model: CANet, item: Item, iterations: int | None = None,
                     input_size: InputSize = None) -> IterationExplorer:
        """One episode only (no episode slider)."""
        return cls([item], [run_episode(model, item, iterations, input_size)])

    def static_controls(self) -> list[Control]:
        """``episode`` (hidden with one episode) and ``iteration``."""
        return [Control("episode", (len(self.episodes),), shown=len(self.episodes) > 1,
                        episodes=True),
                Control("iteration", (self.iterations + 1,))]

    def view(self, state: State) -> tuple[Any, str]:
        """Episode ``e`` at iteration ``t``; the caption lists the IoU of every iteration."""
        e, t = state
        item, run = self.episodes[e], self.runs[e]
        iou = run.ious[t] if run.ious is not None else None
        fig = visual.plot_iteration(item["query_image"], run.probs[t], t,
                                    gt=item.get("query_mask"), iou=iou, mask=run.masks[t])
        caption = episode_heading(e, item, self.class_names)
        if run.ious is not None:
            caption += " &mdash; IoU per iteration: " + _iou_list(run.ious, t)
        return fig, caption

    def _draw(self) -> None:
        state = (int(self.episode_slider.value), int(self.slider.value))
        self._show(*self.view(state))
        self.shown = state


def _iterations(episodes: Sequence[Item], runs: Sequence[EpisodeRun]) -> int:
    """The IOM iterations after CANet-Init that every run holds (checked: one run per episode)."""
    if not episodes or len(episodes) != len(runs):
        raise ValueError(f"need one run per episode, got {len(episodes)} episodes and "
                         f"{len(runs)} runs")
    counts = {len(r.probs) for r in runs}
    if len(counts) != 1:
        raise ValueError(f"runs have different numbers of iterations {sorted(counts)}")
    return counts.pop() - 1


def _iou_list(ious: Sequence[float], chosen: int) -> str:
    """``Init: 40.1 · 1: 45.3 · ...`` (HTML), the chosen iteration in bold."""
    parts = [f"{visual.iteration_name(i)}: {v:.1f}" for i, v in enumerate(ious)]
    parts[chosen] = f"<b>{parts[chosen]}</b>"
    return " &middot; ".join(parts)
