"""ipywidgets for the book: IOM iterations, k-shot attention, episode browsing.

Each explorer computes what it shows up front or once per episode (the
backbone never re-runs when a control moves), keeps its state on the
instance (no globals), and draws with the same :mod:`canetlib.visual`
functions that make the book's static figures. Frames are JPEG bytes in an
``ipywidgets.Image``, so a test can move every control headless and check
what changed (``frames_drawn``, ``shown``).

Frames are shown at their natural pixel size: each figure is rendered at
:data:`FRAME_DPI` and the image's layout width is the JPEG's own width, with
``max_width="100%"`` and ``height="auto"`` so a frame shrinks on a narrow
screen but is never stretched (the box does not stretch its children). A
figure wider than :data:`FRAME_MAX_WIDTH` pixels (5-shot episodes: one row
of seven panels) is wrapped into rows of panels first, so its titles stay
readable. The episode browser, whose 1-shot and 5-shot frames differ in
height, reserves the tallest frame's height so the widget does not jump when
the dataset changes. Each caption ends with a colour key
(:data:`canetlib.visual.GT_COLOR` and friends).

Episodes are fed to the model exactly as :func:`canetlib.evaluate.evaluate`
feeds them: query and supports are brought to one model input size with
:func:`canetlib.evaluate.resize_episode` (test episodes keep their original
sizes and 5-shot supports of different sizes arrive as lists), the model runs
through the evaluator's inference path
(:func:`canetlib.model.inference.iteration_maps`), and the predictions are
upsampled back to the query's original size, where the IoU is measured
(:func:`canetlib.metrics.episode_iou`).
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from canetlib import visual
from canetlib.evaluate import resize_episode, resolve_input_size
from canetlib.metrics import episode_iou
from canetlib.model import CANet
from canetlib.model.inference import episode_maps

__all__ = [
    "AttentionExplorer", "EpisodeBrowser", "EpisodeRun", "IterationExplorer", "foreground_iou",
    "iterations_of", "run_episode",
]

Item = dict[str, Any]
InputSize = int | Sequence[int] | None


#: frames are JPEG: the embedded world's textured backgrounds make PNG frames ~10x larger
FRAME_FORMAT = "jpeg"
#: frames are rendered at this dpi and shown at their natural pixel size (10 pt text = 14 px)
FRAME_DPI = 100
#: figures wider than this many pixels are wrapped into rows of panels before rendering
FRAME_MAX_WIDTH = 1200


def _wrap_panels(fig: Any, max_width: int = FRAME_MAX_WIDTH, dpi: int = FRAME_DPI) -> None:
    """Rearrange a one-row figure wider than ``max_width`` px into rows of equal panels.

    The :mod:`canetlib.visual` figures put every panel in one row; a 5-shot
    episode is then ~2000 px wide and would be shown shrunk to illegible
    titles. The axes keep their order (left to right, then the next row) and
    the figure keeps each panel's size, so the text stays as large as in a
    1-shot frame.
    """
    axes = fig.axes
    width, height = (float(v) for v in fig.get_size_inches())
    rows = min(math.ceil(width * dpi / max_width), len(axes))
    if rows < 2:
        return
    cols = math.ceil(len(axes) / rows)
    rows = math.ceil(len(axes) / cols)
    grid = fig.add_gridspec(rows, cols)
    for i, ax in enumerate(axes):
        ax.set_subplotspec(grid[i // cols, i % cols])
    fig.set_size_inches(width * cols / len(axes), height * rows)


def _frame(fig: Any) -> bytes:
    _wrap_panels(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=FRAME_FORMAT, dpi=FRAME_DPI, bbox_inches="tight",
                pil_kwargs={"quality": 85})
    return buf.getvalue()


def _pixel_size(frame: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels of an encoded frame (read from its header)."""
    from PIL import Image

    with Image.open(io.BytesIO(frame)) as im:
        width, height = im.size
    return int(width), int(height)


def _css_rgb(color: Sequence[int]) -> str:
    r, g, b = (int(c) for c in color)
    return f"rgb({r}, {g}, {b})"


def _swatch(color: Sequence[int], label: str) -> str:
    """A coloured square followed by its label (HTML), kept on one line."""
    return (f'<span style="white-space: nowrap"><span style="display: inline-block; '
            f'width: 0.8em; height: 0.8em; vertical-align: -0.1em; border: 1px solid #777; '
            f'background: {_css_rgb(color)}"></span>&nbsp;{html.escape(label)}</span>')


#: the ``magma`` colour map of :func:`canetlib.visual.plot_iteration`'s probability panel
_MAGMA = ("#000004", "#3b0f70", "#8c2981", "#de4968", "#fe9f6d", "#fcfdbf")


def _colour_key(entries: Sequence[tuple[Sequence[int], str]], probability: bool = False) -> str:
    """One line of HTML naming what each overlay colour means: ``[(rgb, label), ...]``.

    ``probability`` adds the foreground-probability colour scale (0 to 1).
    """
    parts = [_swatch(c, label) for c, label in entries]
    if probability:
        parts.insert(0, '<span style="white-space: nowrap">foreground probability 0&nbsp;'
                        '<span style="display: inline-block; width: 4em; height: 0.8em; '
                        'vertical-align: -0.1em; border: 1px solid #777; background: '
                        f'linear-gradient(to right, {", ".join(_MAGMA)})"></span>&nbsp;1</span>')
    return '<div class="canet-colour-key">' + " &nbsp; ".join(parts) + "</div>"


def foreground_iou(pred: Tensor, gt: Tensor) -> float:
    """Foreground IoU (%) of one binary prediction: :func:`canetlib.metrics.episode_iou`."""
    return episode_iou(pred, gt)


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
    # logits (one scale) or probabilities at the input size, as the evaluator gets them
    out = episode_maps(model, query, supports, masks, iterations, scales, logits=True)
    out_size = tuple(int(s) for s in item["query_image"].shape[-2:])
    probs = [p[0].cpu() for p in out.probabilities(out_size)]
    # foreground > background: the evaluator's binary_prediction on the same maps
    pred_masks = [(p[1] > p[0]).long() for p in probs]
    gt = item.get("query_mask")
    ious = [episode_iou(m, gt.cpu()) for m in pred_masks] if gt is not None else None
    weights = out.attention[0].float().cpu() if out.attention is not None else None
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
#: what the overlay colours of :mod:`canetlib.visual` mean
GROUND_TRUTH = (visual.GT_COLOR, "ground truth")
PREDICTION = (visual.PRED_COLOR, "prediction")
SUPPORT_MASK = (visual.GT_COLOR, "support mask")
IGNORED = (visual.IGNORE_COLOR, "ignored border")


class _Explorer:
    """Common parts: a caption and one image widget redrawn on every change.

    ``image`` shows each frame at its natural pixel size (``frame_size``,
    width and height of the last frame) inside ``frame_box``; with
    ``keep_height`` (explorers whose frames differ in size) the box's minimum
    height is the tallest frame shown or reserved so far, so the widget does
    not jump. ``key`` is the colour key appended to every caption.
    """

    key: str = ""
    #: reserve the tallest frame's height (on for frames of different sizes)
    keep_height: bool = False

    def __init__(self) -> None:
        import ipywidgets as w

        self.image = w.Image(format=FRAME_FORMAT,
                             layout=w.Layout(max_width="100%", height="auto", flex="0 1 auto"))
        self.frame_box = w.Box([self.image],
                               layout=w.Layout(width="100%", align_items="flex-start"))
        self.caption = w.HTML()
        self.frames_drawn = 0
        self.frame_size: tuple[int, int] = (0, 0)

    def _layout(self, controls: Sequence[Any]) -> Any:
        """The explorer's box: controls, caption, frame; nothing stretched to the full width."""
        import ipywidgets as w

        return w.VBox([*controls, self.caption, self.frame_box],
                      layout=w.Layout(align_items="flex-start"))

    def _reserve_height(self, pixels: int) -> None:
        """Make the frame area at least ``pixels`` high from now on (it never shrinks)."""
        current = self.frame_box.layout.min_height
        have = int(current[:-2]) if current else 0
        if pixels > have:
            self.frame_box.layout.min_height = f"{int(pixels)}px"

    def _show(self, fig: Any, caption: str) -> None:
        frame = _frame(fig)
        width, height = _pixel_size(frame)
        with self.image.hold_sync():
            self.image.value = frame
            # the <img> attributes give the browser the aspect ratio before it decodes
            self.image.width, self.image.height = str(width), str(height)
            self.image.layout.width = f"{width}px"
        if self.keep_height:
            self._reserve_height(height)
        self.frame_size = (width, height)
        self.caption.value = caption + self.key
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
        self.widget = self._layout(controls)
        has_gt = any(item.get("query_mask") is not None for item in self.episodes)
        self.key = _colour_key([PREDICTION, *([GROUND_TRUTH, IGNORED] if has_gt else [])],
                               probability=True)
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
        self.widget = self._layout([self.slider])
        has_gt = any(item.get("query_mask") is not None for item in self.episodes)
        self.key = _colour_key([SUPPORT_MASK, *([GROUND_TRUTH] if has_gt else []),
                                *([PREDICTION] if self.predictions is not None else []),
                                *([IGNORED] if has_gt else [])])
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
                                    query=item["query_image"], prediction=pred,
                                    gt=item.get("query_mask"))
        caption = (f"<b>episode {i}</b>, {html.escape(_class_label(item, self.class_names))}"
                   f" &mdash; weights {', '.join(f'{float(v):.2f}' for v in wts)}")
        if self.ious is not None:
            caption += f" &mdash; IoU of the prediction {self.ious[i]:.1f}"
        self._show(fig, caption)
        self.shown = i


def _target_fractions(item: Item) -> tuple[float, float] | None:
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


class EpisodeBrowser(_Explorer):
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
        self.slider = _slider("episode", self._length(labels[0]))
        self.slider.value = self.start
        self.chooser.observe(self._on_dataset, names="value")
        self.slider.observe(self._on_change, names="value")
        controls = [self.slider] if len(labels) == 1 else [self.chooser, self.slider]
        self.widget = self._layout(controls)
        self.key = _colour_key([SUPPORT_MASK, GROUND_TRUTH,
                                *([PREDICTION] if predict is not None else []), IGNORED])
        for label in labels:
            self._reserve_height(self._frame_height(label))
        self.shown: tuple[str, int] = ("", -1)
        self._draw()

    def _start_episode(self, label: str) -> int:
        """The episode the browser opens on (see the class docstring for the rule)."""
        dataset = self.datasets[label]
        fallback = None
        for i in range(min(self._length(label), self.START_SEARCH)):
            fractions = _target_fractions(dataset[i])
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
        import matplotlib

        dataset = self.datasets[label]
        if self._length(label) == 0:
            return 0
        item = dataset[0]
        pred = (torch.zeros(item["query_image"].shape[-2:], dtype=torch.long)
                if self.predict is not None else None)
        fig = visual.plot_episode(item, pred)
        _wrap_panels(fig)
        pad = float(matplotlib.rcParams["savefig.pad_inches"])
        return math.ceil((float(fig.get_size_inches()[1]) + 2 * pad) * FRAME_DPI)

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
