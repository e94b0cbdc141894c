"""ipywidgets for the book: IOM iterations, k-shot attention, episode browsing.

Each explorer computes what it shows once (the backbone never re-runs when a
control moves), keeps its state on the instance (no globals), and draws with
the same :mod:`canetlib.visual` functions that make the book's static
figures. Frames are PNG bytes in an ``ipywidgets.Image``, so a test can move
every control headless and check what changed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from canetlib import visual
from canetlib.metrics import intersection_union
from canetlib.model import CANet


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def foreground_iou(pred: Tensor, gt: Tensor) -> float:
    """Foreground IoU of one binary prediction (255 ignored), in percent."""
    inter, union = intersection_union(pred, gt)
    u = int(union[0, 1])
    return 100.0 * int(inter[0, 1]) / u if u else 100.0


@torch.inference_mode()
def iterations_of(model: CANet, item: dict[str, Any], iterations: int = 4) -> list[Tensor]:
    """Probabilities ``(2, H, W)`` of each IOM iteration for one episode dict.

    The backbone and the comparison run once (``model.encode``); only the
    IOM runs ``iterations + 1`` times (``model.refine``).
    """
    model.eval()
    query = item["query_image"][None]
    feats = model.encode(query, item["support_images"][None], item["support_masks"][None])
    out = model.refine(feats, iterations)
    return [p[0] for p in out.probabilities(size=query.shape[-2:])]


class _Explorer:
    """Common parts: one PNG image widget redrawn by ``_draw`` on every change."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.image = w.Image(format="png")
        self.frames_drawn = 0

    def _show(self, fig: Any) -> None:
        self.image.value = _png(fig)
        self.frames_drawn += 1


class IterationExplorer(_Explorer):
    """Slide through IOM iterations 0..N of one episode (paper section 4.2).

    Shows the foreground probability, the predicted mask and its IoU at the
    chosen iteration; iteration 0 is CANet-Init.
    """

    def __init__(self, image: Tensor, probs: Sequence[Tensor], gt: Tensor | None = None) -> None:
        import ipywidgets as w

        super().__init__()
        self.image_tensor = image
        self.probs = list(probs)
        self.gt = gt
        self.ious = ([foreground_iou(p.argmax(0)[None], gt[None]) for p in self.probs]
                     if gt is not None else None)
        self.slider = w.IntSlider(value=0, min=0, max=len(self.probs) - 1,
                                  description="iteration", continuous_update=False)
        self.slider.observe(self._on_change, names="value")
        self.widget = w.VBox([self.slider, self.image])
        self._draw(0)

    @classmethod
    def from_episode(cls, model: CANet, item: dict[str, Any],
                     iterations: int = 4) -> IterationExplorer:
        return cls(item["query_image"], iterations_of(model, item, iterations),
                   item.get("query_mask"))

    def _on_change(self, change: dict[str, Any]) -> None:
        self._draw(int(change["new"]))

    def _draw(self, t: int) -> None:
        iou = self.ious[t] if self.ious is not None else None
        self._show(visual.plot_iteration(self.image_tensor, self.probs[t], t, gt=self.gt, iou=iou))


class AttentionExplorer(_Explorer):
    """Browse k-shot episodes and the attention weight of each support (section 4.3)."""

    def __init__(self, episodes: Sequence[dict[str, Any]], weights: Sequence[Tensor],
                 predictions: Sequence[Tensor] | None = None) -> None:
        import ipywidgets as w

        if len(episodes) != len(weights):
            raise ValueError(f"{len(episodes)} episodes but {len(weights)} weight vectors")
        super().__init__()
        self.episodes = list(episodes)
        self.weights = list(weights)
        self.predictions = list(predictions) if predictions is not None else None
        self.slider = w.IntSlider(value=0, min=0, max=len(self.episodes) - 1,
                                  description="episode", continuous_update=False)
        self.slider.observe(lambda ch: self._draw(int(ch["new"])), names="value")
        self.widget = w.VBox([self.slider, self.image])
        self._draw(0)

    @classmethod
    def from_model(cls, model: CANet, episodes: Sequence[dict[str, Any]],
                   iterations: int = 4) -> AttentionExplorer:
        """Run the attention model once per episode and keep weights and masks."""
        if model.fusion != "attention":
            raise ValueError("AttentionExplorer needs a CANet built with fusion='attention'")
        weights, preds = [], []
        with torch.inference_mode():
            model.eval()
            for item in episodes:
                pred = model.predict(item["query_image"][None], item["support_images"][None],
                                     item["support_masks"][None], iterations=iterations)
                assert pred.attention is not None
                weights.append(pred.attention[0])
                preds.append(pred.final[0])
        return cls(episodes, weights, preds)

    def _draw(self, i: int) -> None:
        item = self.episodes[i]
        pred = self.predictions[i] if self.predictions is not None else None
        self._show(visual.plot_attention(item["support_images"], item["support_masks"],
                                         self.weights[i], query=item["query_image"],
                                         prediction=pred))


class EpisodeBrowser(_Explorer):
    """Step through the episodes of a dataset: query, mask and supports (chapter 1)."""

    def __init__(self, dataset: Any, count: int | None = None,
                 predict: Callable[[dict[str, Any]], Tensor] | None = None) -> None:
        import ipywidgets as w

        super().__init__()
        self.dataset = dataset
        self.predict = predict
        n = len(dataset) if count is None else min(count, len(dataset))
        self.slider = w.IntSlider(value=0, min=0, max=n - 1, description="episode",
                                  continuous_update=False)
        self.slider.observe(lambda ch: self._draw(int(ch["new"])), names="value")
        self.widget = w.VBox([self.slider, self.image])
        self._draw(0)

    def _draw(self, i: int) -> None:
        item = self.dataset[i]
        pred = self.predict(item) if self.predict is not None else None
        self._show(visual.plot_episode(item, pred))
