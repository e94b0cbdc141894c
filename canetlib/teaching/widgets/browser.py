"""The episode browser of chapter 1: step through the episodes of one or several datasets.

Each frame is :func:`canetlib.teaching.visual.plot_episode` (supports with their masks,
the query with its truth and, with a predictor, the model's final mask);
each prediction is computed once and kept. The browser opens on an episode
whose target is clearly visible (:func:`target_fractions`) and reserves the
tallest dataset's frame height up front, so the widget does not jump when
1-shot and 5-shot datasets alternate.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from canetlib.model import CANet
from canetlib.teaching import visual
from canetlib.teaching.widgets.explorer import Explorer, class_label, slider, source_class_names
from canetlib.teaching.widgets.frame import frame_height
from canetlib.teaching.widgets.key import (
    GROUND_TRUTH,
    IGNORED,
    PREDICTION,
    SUPPORT_MASK,
    colour_key,
)
from canetlib.teaching.widgets.runs import InputSize, Item, run_episode, widget_input_size
from canetlib.teaching.widgets.static import Control, State

__all__ = ["EpisodeBrowser", "target_fractions"]


def target_fractions(item: Item) -> tuple[float, float] | None:
    """``(coverage, on_edge)`` of an episode's query target, or ``None`` without a mask.

    ``coverage`` is the fraction of the query's pixels that are target
    (``mask == 1``), ``on_edge`` the fraction of the target's pixels in the
    query's outermost row or column (a target cut by the image border has many).
    """
    mask = item.get("query_mask")
    if mask is None:
        return None
    target = torch.as_tensor(mask).squeeze() == 1
    area = int(target.sum())
    if area == 0 or target.dim() != 2:
        return 0.0, 0.0
    inner = int(target[1:-1, 1:-1].sum())
    return area / target.numel(), (area - inner) / area


class EpisodeBrowser(Explorer):
    """Step through the episodes of one or several datasets (chapter 1).

    Shows the supports with their masks, the query with its ground truth and,
    when a predictor is given, the model's final mask with its IoU; the
    caption ends with a colour key (support masks and ground truth green,
    predictions red, ignored borders white).

    The browser opens on the first dataset at episode ``start``: the first
    episode (among the first :attr:`START_SEARCH` offered) whose query target
    covers at least :attr:`MIN_TARGET` (1 %) of the query and has at most
    :attr:`MAX_ON_EDGE` (10 %) of its pixels on the query's border (so it is
    not mostly cut off); failing that, the first whose target covers
    :attr:`MIN_TARGET`, and failing that episode 0. The slider still offers
    every episode, and choosing another dataset shows its episode 0. The
    frame area reserves the height of the tallest dataset's frames, so the
    widget keeps its height when 1-shot and 5-shot episodes alternate.

    Args:
        datasets: an episode dataset, or ``{label: dataset}`` to choose from
            (a dropdown appears when there are several: e.g. the training and
            the test episodes of a fold).
        count: episodes offered per dataset (default: all).
        predict: optional ``item -> (H, W)`` binary mask at the query's size;
            each prediction is computed once and kept.
    """

    keep_height = True
    #: the least fraction of the query the start episode's target covers
    MIN_TARGET = 0.01
    #: the largest fraction of the start episode's target on the query's border
    MAX_ON_EDGE = 0.10
    #: how many episodes are searched for the start episode
    START_SEARCH = 100
    static_name = "browser"

    def __init__(self, datasets: Any, count: int | None = None,
                 predict: Callable[[Item], Tensor] | None = None) -> None:
        import ipywidgets as w

        super().__init__()
        self.datasets: dict[str, Any] = (dict(datasets) if isinstance(datasets, Mapping)
                                         else {"episodes": datasets})
        if not self.datasets:
            raise ValueError("EpisodeBrowser needs at least one dataset")
        self.count = count
        self.predict = predict
        self._predictions: dict[tuple[str, int], Tensor] = {}
        labels = list(self.datasets)
        self.start = self._start_episode(labels[0])
        self.chooser = w.Dropdown(options=labels, value=labels[0], description="episodes")
        self.slider = slider("episode", self._length(labels[0]))
        self.slider.value = self.start
        self.chooser.observe(self._on_dataset, names="value")
        self.slider.observe(self._on_change, names="value")
        self.widget = self._layout([self.slider] if len(labels) == 1
                                   else [self.chooser, self.slider])
        self.key = colour_key([SUPPORT_MASK, GROUND_TRUTH,
                               *([PREDICTION] if predict is not None else []), IGNORED])
        for label in labels:
            self._reserve_height(self._frame_height(label))
        self.shown: tuple[str, int] = ("", -1)
        self._draw()

    @classmethod
    def with_model(cls, datasets: Any, model: CANet, count: int | None = None,
                   input_size: InputSize = None) -> EpisodeBrowser:
        """A browser that also shows ``model``'s final prediction (run as the evaluator does)."""
        first = next(iter(datasets.values())) if isinstance(datasets, Mapping) else datasets
        size = widget_input_size(first, input_size, model)

        def predict(item: Item) -> Tensor:
            return run_episode(model, item, input_size=size).final

        return cls(datasets, count, predict)

    def _length(self, label: str) -> int:
        n = len(self.datasets[label])
        return n if self.count is None else min(self.count, n)

    def _start_episode(self, label: str) -> int:
        """The episode the browser opens on (see the class docstring for the rule)."""
        dataset = self.datasets[label]
        fallback = None
        for i in range(min(self._length(label), self.START_SEARCH)):
            fractions = target_fractions(dataset[i])
            if fractions is None:
                return 0  # no ground truth to judge by
            coverage, on_edge = fractions
            if coverage >= self.MIN_TARGET:
                if on_edge <= self.MAX_ON_EDGE:
                    return i
                if fallback is None:
                    fallback = i
        return fallback if fallback is not None else 0

    def _frame_height(self, label: str) -> int:
        """The height in pixels (an upper estimate) of a frame of dataset ``label``.

        Lays out, without drawing, the figure of the dataset's first episode
        (with a placeholder prediction when there is a predictor).
        """
        if self._length(label) == 0:
            return 0
        item = self.datasets[label][0]
        pred = (torch.zeros(item["query_image"].shape[-2:], dtype=torch.long)
                if self.predict is not None else None)
        return frame_height(visual.plot_episode(item, pred))

    def _on_dataset(self, change: dict[str, Any]) -> None:
        n = self._length(str(change["new"]))
        self.slider.value = 0  # draws episode 0 of the new dataset if the value changed
        self.slider.max = max(n - 1, 0)
        self._draw()  # no-op when that frame is already shown

    def _prediction(self, label: str, i: int, item: Item) -> Tensor | None:
        """The predictor's mask of episode ``i`` of ``label``, computed once and kept."""
        if self.predict is None:
            return None
        key = (label, i)
        if key not in self._predictions:
            self._predictions[key] = self.predict(item)
        return self._predictions[key]

    def _caption(self, label: str, i: int, item: Item) -> str:
        """``<b>label, episode i</b>: class ..., k-shot`` and the query and support ids."""
        k = len(item["support_images"])
        names = source_class_names(self.datasets[label])
        caption = (f"<b>{html.escape(label)}, episode {i}</b>: "
                   f"{html.escape(class_label(item, names))}, {k}-shot")
        if item.get("query_id") is not None:
            caption += (f" &mdash; query {html.escape(str(item['query_id']))}, supports "
                        + ", ".join(html.escape(str(s)) for s in item.get("support_ids", [])))
        return caption

    def static_controls(self) -> list[Control]:
        """``set`` (the dropdown, hidden with one dataset) and ``episode`` (its length per set)."""
        labels = tuple(self.datasets)
        return [Control("set", options=labels, shown=len(labels) > 1, label="episodes"),
                Control("episode", tuple(self._length(label) for label in labels), per="set",
                        initial=self.start, episodes=True)]

    def view(self, state: State) -> tuple[Any, str]:
        """Episode ``i`` of the ``s``-th dataset, with the predictor's mask when there is one."""
        s, i = state
        label = list(self.datasets)[s]
        item = self.datasets[label][i]
        fig = visual.plot_episode(item, self._prediction(label, i, item))
        return fig, self._caption(label, i, item)

    def _draw(self) -> None:
        label, i = str(self.chooser.value), int(self.slider.value)
        if self.shown == (label, i):
            return
        self._show(*self.view((list(self.datasets).index(label), i)))
        self.shown = (label, i)
