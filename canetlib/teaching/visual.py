"""Matplotlib figures of episodes for the book: supports, queries, IOM iterations, attention.

Every function returns a :class:`matplotlib.figure.Figure` built without
``pyplot`` (no global state, no ``show()``, safe under the Agg backend);
Jupyter displays a returned figure, scripts call ``fig.savefig(...)``.
Images, masks and probabilities are those of :mod:`canetlib.teaching.overlays`;
this module also gives the book its colours, overlays and charts
(:mod:`canetlib.teaching.charts`) under one name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.figure import Figure

from canetlib.teaching.charts import iteration_name, plot_iou_per_iteration, plot_paper_vs_ours
from canetlib.teaching.overlays import (
    GT_COLOR,
    IGNORE_COLOR,
    PRED_COLOR,
    PROBABILITY_CMAP,
    denormalize,
    foreground,
    iou_per_iteration,
    mask_array,
    mask_iou,
    overlay,
    predicted_mask,
    to_rgb,
)

__all__ = [
    "GT_COLOR", "IGNORE_COLOR", "PRED_COLOR", "PROBABILITY_CMAP", "denormalize", "draw_outline",
    "foreground", "iou_per_iteration", "iteration_name", "overlay", "plot_attention",
    "plot_episode", "plot_iou_per_iteration", "plot_iteration", "plot_iterations",
    "plot_outlines", "plot_paper_vs_ours", "predicted_mask", "to_rgb",
]


def draw_outline(ax: Any, mask: Any, color: Sequence[int] = GT_COLOR, label: str | None = None,
                 linestyle: str = "solid") -> None:
    """Outline the pixels where ``mask == 1`` on ``ax`` (a contour with a dark halo).

    Unlike :func:`overlay`, the object inside stays visible, so a green truth on a
    green object still shows. ``label`` adds a legend entry even for an empty mask.
    """
    m = (mask_array(mask) == 1).astype(np.float32)
    rgb = tuple(float(c) / 255 for c in color)
    if m.any():
        lines = ax.contour(m, levels=[0.5], colors=[rgb], linewidths=2.0, linestyles=linestyle)
        lines.set_path_effects([patheffects.Stroke(linewidth=3.5, foreground="black"),
                                patheffects.Normal()])
    if label is not None:
        ax.plot([], [], color=rgb, linewidth=2.0, linestyle=linestyle, label=label)


def plot_outlines(panels: Sequence[tuple[Any, Sequence[tuple[Any, Sequence[int], str]], str]],
                  panel_width: float = 2.8, height: float = 3.2) -> Figure:
    """One row of images with labelled outlines: ``(image, [(mask, colour, label), ...], title)``.

    The outlines are drawn by :func:`draw_outline`; one legend below the row
    names each label once (for example ``"truth: bottle"``, ``"prediction"``).
    """
    fig, axes = _row(len(panels), panel_width, height)
    for ax, (image, outlines, title) in zip(axes, panels):
        ax.imshow(to_rgb(image))
        for mask, color, label in outlines:
            draw_outline(ax, mask, color, label)
        ax.set_title(title, fontsize=9)
        _hide_axes(ax)
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncols=len(handles), fontsize=8)
    return fig


def _iteration_title(t: int, iou: float | None) -> str:
    name = "CANet-Init" if t == 0 else f"iteration {t}"
    return name if iou is None else f"{name}\nIoU {iou:.1f}"


def _hide_axes(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _row(panels: int, panel_width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with one row of ``panels`` axes, ``panel_width`` inches each."""
    fig = Figure(figsize=(panel_width * panels, height), layout="constrained")
    return fig, np.atleast_1d(fig.subplots(1, panels))


def _truth_panel(ax: Any, image: Any, gt: Any, title: str = "ground truth") -> None:
    """The ground truth (green, ignored pixels lightened) over an image."""
    ax.imshow(overlay(image, gt, GT_COLOR, show_ignore=True))
    ax.set_title(title)


def _image_panel(ax: Any, image: Any, title: str) -> None:
    """An image on its own (a query without ground truth or prediction)."""
    ax.imshow(to_rgb(image))
    ax.set_title(title)


def _prediction_panel(ax: Any, image: Any, pred: Any, gt: Any = None,
                      title: str = "prediction") -> None:
    """A binary prediction (red) over an image; with ``gt``, its IoU on a second title line."""
    p = mask_array(pred)
    ax.imshow(overlay(image, p, PRED_COLOR))
    if gt is not None:
        title += f"\nIoU {mask_iou(p == 1, mask_array(gt)):.1f}"
    ax.set_title(title)


def _iteration_panel(ax: Any, image: Any, mask: Any, t: int, iou: float | None) -> None:
    """Iteration ``t``'s predicted mask (red) over an image."""
    ax.imshow(overlay(image, mask, PRED_COLOR))
    ax.set_title(_iteration_title(t, iou))


def _support_panels(axes: np.ndarray, pairs: Sequence[tuple[Any, Any]],
                    weights: np.ndarray | None = None) -> None:
    """``support i`` panels: each support image with its mask (green).

    With attention ``weights`` each title adds the support's weight (the
    largest in bold) and ignored pixels are not lightened.
    """
    best = int(np.argmax(weights)) if weights is not None else -1
    for i, (img, m) in enumerate(pairs):
        axes[i].imshow(overlay(img, m, GT_COLOR, show_ignore=weights is None))
        if weights is None:
            axes[i].set_title(f"support {i + 1}")
        else:
            axes[i].set_title(f"support {i + 1}\nweight {weights[i]:.2f}",
                              fontweight="bold" if i == best else "normal")


def plot_iteration(image: Any, probs: Any, t: int, gt: Any = None,
                   iou: float | None = None, mask: Any = None) -> Figure:
    """One IOM iteration: foreground probability, and the mask over the image (+ truth).

    ``mask`` is the iteration's predicted mask (default: :func:`predicted_mask` of ``probs``).
    """
    rgb = to_rgb(image)
    fig, axes = _row(3 if gt is not None else 2, 3.0, 3.2)
    axes[0].imshow(foreground(probs), cmap=PROBABILITY_CMAP, vmin=0.0, vmax=1.0)
    axes[0].set_title("foreground probability")
    _iteration_panel(axes[1], rgb, predicted_mask(probs) if mask is None else mask, t, iou)
    if gt is not None:
        _truth_panel(axes[2], rgb, gt)
    for ax in axes:
        _hide_axes(ax)
    return fig


def plot_iterations(image: Any, probs_per_iteration: Sequence[Any], gt: Any = None,
                    ious: Sequence[float] | None = None) -> Figure:
    """All IOM iterations in a row (index 0 = CANet-Init), ground truth last.

    ``ious`` defaults to :func:`iou_per_iteration` when ``gt`` is given.
    """
    if not probs_per_iteration:
        raise ValueError("no iteration to plot")
    rgb = to_rgb(image)
    if ious is None and gt is not None:
        ious = iou_per_iteration(probs_per_iteration, gt)
    if ious is not None and len(ious) != len(probs_per_iteration):
        raise ValueError(f"{len(ious)} IoUs for {len(probs_per_iteration)} iterations")
    fig, axes = _row(len(probs_per_iteration) + (gt is not None), 2.6, 2.9)
    for t, probs in enumerate(probs_per_iteration):
        _iteration_panel(axes[t], rgb, predicted_mask(probs), t,
                         ious[t] if ious is not None else None)
    if gt is not None:
        _truth_panel(axes[-1], rgb, gt)
    for ax in axes:
        _hide_axes(ax)
    return fig


def _supports(supports: Any, masks: Any) -> list[tuple[Any, Any]]:
    """Pair k support images with masks; accepts ``(k, 3, H, W)`` or lists, 1-shot shorthands."""
    if torch.is_tensor(supports) and supports.dim() == 3:
        supports, masks = supports[None], masks[None]
    if len(supports) != len(masks):
        raise ValueError(f"{len(supports)} support images but {len(masks)} masks")
    return list(zip(supports, masks))


def plot_episode(item: dict[str, Any], pred: Any = None, class_name: str | None = None
                 ) -> Figure:
    """An episode: supports with their masks, the query with its truth (and a prediction).

    ``class_name`` labels the query (else the numeric ``class_id`` is shown). Ground
    truth is drawn in green, the prediction in red, with its IoU in percent.
    """
    pairs = _supports(item["support_images"], item["support_masks"])
    gt = item.get("query_mask")
    fig, axes = _row(len(pairs) + 1 + (pred is not None), 2.8, 3.0)
    _support_panels(axes, pairs)
    q = len(pairs)
    query = item["query_image"]
    title = "query + truth" if gt is not None else "query"
    if class_name is not None:
        title += f" ({class_name})"
    elif "class_id" in item:
        title += f" (class {int(item['class_id'])})"
    if gt is not None:
        _truth_panel(axes[q], query, gt, title)
    else:
        _image_panel(axes[q], query, title)
    if pred is not None:
        _prediction_panel(axes[q + 1], query, pred, gt)
    for ax in axes:
        _hide_axes(ax)
    return fig


def plot_attention(supports: Any, masks: Any, weights: Any, query: Any = None,
                   prediction: Any = None, gt: Any = None) -> Figure:
    """k supports titled with their attention weights, a bar chart of the weights.

    ``weights``: the k softmax-normalised attention weights of one episode
    (paper eq. 2). ``query`` (and ``prediction``, a binary mask) add the query;
    ``gt`` (its 0/1/255 mask) adds a "query + truth" panel (green) and the
    prediction's IoU (red).
    """
    pairs = _supports(supports, masks)
    w = _attention_weights(weights, len(pairs))
    show_gt = query is not None and gt is not None
    fig, axes = _row(len(pairs) + 1 + (query is not None) + show_gt, 2.6, 3.0)
    _support_panels(axes, pairs, w)
    k = len(pairs)
    if show_gt:
        _truth_panel(axes[k], query, gt, "query + truth")
    if query is not None:
        q = k + show_gt
        if prediction is not None:
            _prediction_panel(axes[q], query, prediction, gt if show_gt else None,
                              "prediction" if show_gt else "query + prediction")
        else:
            _image_panel(axes[q], query, "query")
    for ax in axes[:-1]:
        _hide_axes(ax)
    _weight_bars(axes[-1], w)
    return fig


def _attention_weights(weights: Any, k: int) -> np.ndarray:
    """The ``k`` attention weights of one episode as a flat array (checked against ``k``)."""
    w = weights.detach().float().cpu().numpy() if torch.is_tensor(weights) \
        else np.asarray(weights, dtype=np.float64)
    w = np.ravel(w)
    if w.size != k:
        raise ValueError(f"{w.size} attention weights for {k} supports")
    return w


def _weight_bars(ax: Any, w: np.ndarray) -> None:
    """A bar chart of the attention weights, supports numbered from 1."""
    k = len(w)
    ax.bar(np.arange(1, k + 1), w, color="tab:blue")
    ax.set_ylim(0, max(1.0, float(w.max())))
    ax.set_xticks(np.arange(1, k + 1))
    ax.set_xlabel("support")
    ax.set_title("attention weights")
