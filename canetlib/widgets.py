"""ipywidgets for the book: IOM iterations, k-shot attention, episode browsing.

Each explorer computes what it shows up front or once per episode (the
backbone never re-runs when a control moves), keeps its state on the
instance (no globals), and draws with the same :mod:`canetlib.visual`
functions that make the book's static figures. Frames are JPEG bytes in an
``ipywidgets.Image``, so a test can move every control headless and check
what changed (``frames_drawn``, ``shown``).

Episodes are fed to the model exactly as :func:`canetlib.evaluate.evaluate`
feeds them: query and supports are brought to one model input size with
:func:`canetlib.evaluate.resize_episode` (test episodes keep their original
sizes and 5-shot supports of different sizes arrive as lists), the model runs
through :func:`canetlib.evaluate.iteration_probabilities`, and the
predictions are upsampled back to the query's original size, where the IoU
is measured.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from canetlib import visual
from canetlib.evaluate import iteration_probabilities, resize_episode, resolve_input_size
from canetlib.inputs import check_episode
from canetlib.metrics import intersection_union
from canetlib.model import CANet

__all__ = [
    "AttentionExplorer", "EpisodeBrowser", "EpisodeRun", "IterationExplorer", "foreground_iou",
    "iterations_of", "run_episode",
]

Item = dict[str, Any]
InputSize = int | Sequence[int] | None


#: frames are JPEG: the embedded world's textured backgrounds make PNG frames large
FRAME_FORMAT = "jpeg"


def _frame(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=FRAME_FORMAT, dpi=72, bbox_inches="tight",
                pil_kwargs={"quality": 85})
    return buf.getvalue()


def foreground_iou(pred: Tensor, gt: Tensor) -> float:
    """Foreground IoU of one binary prediction (255 ignored), in percent.

    An empty union (no object predicted, none present) counts as 100, as in
    the evaluator's per-episode IoU.
    """
    inter, union = intersection_union(pred, gt)
    u = int(union[0, 1])
    return 100.0 * int(inter[0, 1]) / u if u else 100.0


# -- running one episode as the evaluator does -------------------------------------------------
@dataclass
class EpisodeRun:
    """Everything the explorers show about one episode, at the query's original size.

    ``probs[t]`` is the ``(2, H, W)`` background/foreground probability of IOM
    iteration ``t`` (0 = CANet-Init), ``masks[t]`` its ``(H, W)`` binary mask,
    ``ious[t]`` its foreground IoU in % (``None`` without a query mask),
    ``attention`` the ``(k,)`` attention weights (attention fusion only) and
    ``input_size`` the size the model saw.
    """

    probs: list[Tensor]
    masks: list[Tensor]
    ious: list[float] | None
    attention: Tensor | None
    input_size: tuple[int, int]

    @property
    def final(self) -> Tensor:
        """The last iteration's mask."""
        return self.masks[-1]


def _size_of(item: Item, input_size: InputSize) -> tuple[int, int]:
    """The model input size: as given, else the query's own size."""
    if input_size is None:
        h, w = item["query_image"].shape[-2:]
        return int(h), int(w)
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def _default_input_size(episodes: Any, input_size: InputSize) -> InputSize:
    """``input_size``, else the evaluator's default for a dataset with a known source."""
    if input_size is not None or getattr(episodes, "source", None) is None:
        return input_size
    return resolve_input_size(episodes, None)


def _device(model: CANet) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def run_episode(model: CANet, item: Item, iterations: int | None = None,
                input_size: InputSize = None, scales: Sequence[float] = (1.0,)) -> EpisodeRun:
    """Run ``model`` on one episode dict the way :func:`canetlib.evaluate.evaluate` does.

    Args:
        model: a :class:`CANet` on any device (its training flag is restored).
        item: an episode (:mod:`canetlib.data.episodes` format); supports may
            be a ``(k, 3, H, W)`` tensor or a list of k differently sized images.
        iterations: IOM refinements after CANet-Init (default: the model's).
        input_size: the model input size, an int or ``(H, W)``; ``None`` = the
            query's own size (supports are resized to it). Pass
            ``canetlib.evaluate.resolve_input_size(dataset, None)`` to match
            the evaluator's default for a dataset.
        scales: query scales (multi-scale test), as in the evaluator.
    """
    iterations = model.iterations if iterations is None else int(iterations)
    size = _size_of(item, input_size)
    query, supports, masks = resize_episode(item["query_image"], item["support_images"],
                                            item["support_masks"], size)
    dev = _device(model)
    query, supports, masks = query[None].to(dev), supports[None].to(dev), masks[None].to(dev)
    check_episode(query, supports, masks)
    was_training = model.training
    model.eval()
    try:
        maps, attention = iteration_probabilities(model, query, supports, masks, iterations,
                                                  scales)
    finally:
        model.train(was_training)
    # one scale: logits on the feature grid (log-probabilities for mask fusions);
    # several scales: probabilities at the input size (see iteration_probabilities)
    are_logits = tuple(float(s) for s in scales) == (1.0,)
    out_size = tuple(int(s) for s in item["query_image"].shape[-2:])
    probs = []
    for m in maps:
        up = m.float()
        if tuple(up.shape[-2:]) != out_size:
            up = F.interpolate(up, size=out_size, mode="bilinear", align_corners=True)
        probs.append((torch.softmax(up, dim=1) if are_logits else up)[0].cpu())
    # foreground > background: the evaluator's binary_prediction on the same maps
    pred_masks = [(p[1] > p[0]).long() for p in probs]
    gt = item.get("query_mask")
    ious = [foreground_iou(m[None], gt[None].cpu()) for m in pred_masks] if gt is not None \
        else None
    weights = attention[0].float().cpu() if attention is not None else None
    return EpisodeRun(probs, pred_masks, ious, weights, size)


def iterations_of(model: CANet, item: Item, iterations: int = 4,
                  input_size: InputSize = None) -> list[Tensor]:
    """Probabilities ``(2, H, W)`` of each IOM iteration for one episode dict.

    The backbone and the comparison run once; only the IOM runs
    ``iterations + 1`` times. See :func:`run_episode` for ``input_size``.
    """
    return run_episode(model, item, iterations, input_size).probs


def _class_label(item: Item, names: Sequence[str] | None) -> str:
    cid = item.get("class_id")
    if cid is None:
        return "class ?"
    cid = int(cid)
    if names is not None and 0 < cid <= len(names):
        return f"class {cid} ({names[cid - 1]})"
    return f"class {cid}"


def _class_names(episodes: Any) -> Sequence[str] | None:
    names = getattr(getattr(episodes, "source", None), "class_names", None)
    return tuple(names) if names else None


# -- the widgets ---------------------------------------------------------------------------
class _Explorer:
    """Common parts: a caption and one image widget redrawn on every change."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.image = w.Image(format=FRAME_FORMAT)
        self.caption = w.HTML()
        self.frames_drawn = 0

    def _show(self, fig: Any, caption: str) -> None:
        self.image.value = _frame(fig)
        self.caption.value = caption
        self.frames_drawn += 1

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[attr-defined]


def _slider(description: str, count: int) -> Any:
    import ipywidgets as w

    return w.IntSlider(value=0, min=0, max=max(count - 1, 0), description=description,
                       continuous_update=False)


def _iteration_name(t: int) -> str:
    return "Init" if t == 0 else str(t)


class IterationExplorer(_Explorer):
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

    def __init__(self, episodes: Sequence[Item], runs: Sequence[EpisodeRun],
                 class_names: Sequence[str] | None = None) -> None:
        import ipywidgets as w

        if not episodes or len(episodes) != len(runs):
            raise ValueError(f"need one run per episode, got {len(episodes)} episodes and "
                             f"{len(runs)} runs")
        counts = {len(r.probs) for r in runs}
        if len(counts) != 1:
            raise ValueError(f"runs have different numbers of iterations {sorted(counts)}")
        super().__init__()
        self.episodes = list(episodes)
        self.runs = list(runs)
        self.class_names = class_names
        self.iterations = counts.pop() - 1
        self.episode_slider = _slider("episode", len(self.episodes))
        self.slider = _slider("iteration", self.iterations + 1)
        self.episode_slider.observe(self._on_change, names="value")
        self.slider.observe(self._on_change, names="value")
        controls = [self.slider] if len(self.episodes) == 1 else [self.episode_slider,
                                                                   self.slider]
        self.widget = w.VBox([*controls, self.caption, self.image])
        self.shown: tuple[int, int] = (-1, -1)
        self._draw()

    @classmethod
    def from_model(cls, model: CANet, episodes: Any, count: int | None = None,
                   iterations: int | None = None, input_size: InputSize = None
                   ) -> IterationExplorer:
        """Run ``model`` once on each of the first ``count`` episodes of a dataset or list.

        ``input_size`` defaults to the evaluator's choice for a dataset with a
        source (128 for the embedded world), else the query's own size.
        """
        n = len(episodes) if count is None else min(count, len(episodes))
        size = _default_input_size(episodes, input_size)
        items = [episodes[i] for i in range(n)]
        runs = [run_episode(model, item, iterations, size) for item in items]
        return cls(items, runs, _class_names(episodes))

    @classmethod
    def from_episode(cls, model: CANet, item: Item, iterations: int | None = None,
                     input_size: InputSize = None) -> IterationExplorer:
        """One episode only (no episode slider)."""
        return cls([item], [run_episode(model, item, iterations, input_size)])

    def _on_change(self, change: dict[str, Any]) -> None:
        del change
        self._draw()

    def _draw(self) -> None:
        e, t = int(self.episode_slider.value), int(self.slider.value)
        item, run = self.episodes[e], self.runs[e]
        iou = run.ious[t] if run.ious is not None else None
        fig = visual.plot_iteration(item["query_image"], run.probs[t], t,
                                    gt=item.get("query_mask"), iou=iou)
        caption = f"<b>episode {e}</b>, {html.escape(_class_label(item, self.class_names))}"
        if run.ious is not None:
            parts = [f"{_iteration_name(i)}: {v:.1f}" for i, v in enumerate(run.ious)]
            parts[t] = f"<b>{parts[t]}</b>"
            caption += " &mdash; IoU per iteration: " + " &middot; ".join(parts)
        self._show(fig, caption)
        self.shown = (e, t)


class AttentionExplorer(_Explorer):
    """Browse k-shot episodes and the attention weight of each support (section 4.3).

    Args:
        episodes: k-shot episode dicts.
        weights: the ``(k,)`` softmax-normalised weights of each episode (eq. 2).
        predictions: optional final ``(H, W)`` masks of the queries.
        ious: optional IoU (%) of each prediction, for the caption.
        class_names: names of class ids ``1..n`` for the caption.
    """

    def __init__(self, episodes: Sequence[Item], weights: Sequence[Tensor],
                 predictions: Sequence[Tensor] | None = None,
                 ious: Sequence[float] | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        import ipywidgets as w

        if not episodes or len(episodes) != len(weights):
            raise ValueError(f"{len(episodes)} episodes but {len(weights)} weight vectors")
        for name, values in (("predictions", predictions), ("ious", ious)):
            if values is not None and len(values) != len(episodes):
                raise ValueError(f"{len(episodes)} episodes but {len(values)} {name}")
        super().__init__()
        self.episodes = list(episodes)
        self.weights = [torch.as_tensor(wt).float().flatten() for wt in weights]
        self.predictions = list(predictions) if predictions is not None else None
        self.ious = list(ious) if ious is not None else None
        self.class_names = class_names
        self.slider = _slider("episode", len(self.episodes))
        self.slider.observe(self._on_change, names="value")
        self.widget = w.VBox([self.slider, self.caption, self.image])
        self.shown = -1
        self._draw()

    @classmethod
    def from_model(cls, model: CANet, episodes: Any, count: int | None = None,
                   iterations: int | None = None, input_size: InputSize = None
                   ) -> AttentionExplorer:
        """Run an attention-fusion model once on each of the first ``count`` episodes.

        Supports of different sizes (test episodes at original size) are
        resized as the evaluator does; see :meth:`IterationExplorer.from_model`
        for ``input_size``.
        """
        if model.fusion != "attention":
            raise ValueError("AttentionExplorer needs a CANet built with fusion='attention'")
        n = len(episodes) if count is None else min(count, len(episodes))
        size = _default_input_size(episodes, input_size)
        items = [episodes[i] for i in range(n)]
        runs = [run_episode(model, item, iterations, size) for item in items]
        weights = []
        for run in runs:
            assert run.attention is not None
            weights.append(run.attention)
        finals = [r.ious[-1] if r.ious is not None else None for r in runs]
        ious = [v for v in finals if v is not None]
        return cls(items, weights, [r.final for r in runs],
                   ious if len(ious) == len(runs) else None, _class_names(episodes))

    def _on_change(self, change: dict[str, Any]) -> None:
        self._draw()

    def _draw(self) -> None:
        i = int(self.slider.value)
        item = self.episodes[i]
        pred = self.predictions[i] if self.predictions is not None else None
        wts = self.weights[i]
        fig = visual.plot_attention(item["support_images"], item["support_masks"], wts,
                                    query=item["query_image"], prediction=pred)
        caption = (f"<b>episode {i}</b>, {html.escape(_class_label(item, self.class_names))}"
                   f" &mdash; weights {', '.join(f'{float(v):.2f}' for v in wts)}")
        if self.ious is not None:
            caption += f" &mdash; IoU of the prediction {self.ious[i]:.1f}"
        self._show(fig, caption)
        self.shown = i


class EpisodeBrowser(_Explorer):
    """Step through the episodes of one or several datasets (chapter 1).

    Shows the supports with their masks, the query with its ground truth and,
    when a predictor is given, the model's final mask with its IoU.

    Args:
        datasets: an episode dataset, or ``{label: dataset}`` to choose from
            (a dropdown appears when there are several: e.g. the training and
            the test episodes of a fold).
        count: episodes offered per dataset (default: all).
        predict: optional ``item -> (H, W)`` binary mask at the query's size;
            each prediction is computed once and kept.
    """

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
        self.chooser = w.Dropdown(options=labels, value=labels[0], description="episodes")
        self.slider = _slider("episode", self._length(labels[0]))
        self.chooser.observe(self._on_dataset, names="value")
        self.slider.observe(self._on_change, names="value")
        controls = [self.slider] if len(labels) == 1 else [self.chooser, self.slider]
        self.widget = w.VBox([*controls, self.caption, self.image])
        self.shown: tuple[str, int] = ("", -1)
        self._draw()

    @classmethod
    def with_model(cls, datasets: Any, model: CANet, count: int | None = None,
                   input_size: InputSize = None) -> EpisodeBrowser:
        """A browser that also shows ``model``'s final prediction (run as the evaluator does)."""
        first = next(iter(datasets.values())) if isinstance(datasets, Mapping) else datasets
        size = _default_input_size(first, input_size)

        def predict(item: Item) -> Tensor:
            return run_episode(model, item, input_size=size).final

        return cls(datasets, count, predict)

    def _length(self, label: str) -> int:
        n = len(self.datasets[label])
        return n if self.count is None else min(self.count, n)

    def _on_dataset(self, change: dict[str, Any]) -> None:
        n = self._length(str(change["new"]))
        self.slider.value = 0  # draws episode 0 of the new dataset if the value changed
        self.slider.max = max(n - 1, 0)
        self._draw()  # no-op when that frame is already shown

    def _on_change(self, change: dict[str, Any]) -> None:
        self._draw()

    def _prediction(self, label: str, i: int, item: Item) -> Tensor | None:
        if self.predict is None:
            return None
        key = (label, i)
        if key not in self._predictions:
            self._predictions[key] = self.predict(item)
        return self._predictions[key]

    def _draw(self) -> None:
        label, i = str(self.chooser.value), int(self.slider.value)
        if self.shown == (label, i):
            return
        dataset = self.datasets[label]
        item = dataset[i]
        pred = self._prediction(label, i, item)
        fig = visual.plot_episode(item, pred)
        k = len(item["support_images"])
        caption = (f"<b>{html.escape(label)}, episode {i}</b>: "
                   f"{html.escape(_class_label(item, _class_names(dataset)))}, {k}-shot")
        if item.get("query_id") is not None:
            caption += (f" &mdash; query {html.escape(str(item['query_id']))}, supports "
                        + ", ".join(html.escape(str(s)) for s in item.get("support_ids", [])))
        self._show(fig, caption)
        self.shown = (label, i)
