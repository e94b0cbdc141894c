"""Matplotlib figures for the book: episodes, IOM iterations, k-shot attention.

Every function returns a :class:`matplotlib.figure.Figure` built without
``pyplot`` (no global state, no ``show()``, safe under the Agg backend);
Jupyter displays a returned figure, scripts call ``fig.savefig(...)``.
Images may be ImageNet-normalised tensors ``(3, H, W)`` (as episodes hold
them), ``uint8`` arrays ``(H, W, 3)`` or PIL images; masks hold 0/1 with 255
= ignore; probabilities are per-iteration ``(2, H, W)`` maps (background,
foreground) or foreground maps ``(H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.figure import Figure
from torch import Tensor

from canetlib.data.episodes import denormalise_image
from canetlib.data.source import IGNORE_INDEX
from canetlib.metrics import episode_iou

__all__ = [
    "GT_COLOR", "IGNORE_COLOR", "PRED_COLOR", "PROBABILITY_CMAP", "denormalize", "draw_outline",
    "foreground", "iou_per_iteration", "iteration_name", "overlay", "plot_attention",
    "plot_episode", "plot_iou_per_iteration", "plot_iteration", "plot_iterations",
    "plot_outlines", "plot_paper_vs_ours", "to_rgb",
]

ArrayLike = Tensor | np.ndarray
#: colours of the ground truth (green), of predictions (red) and of ignored pixels (white)
GT_COLOR = (40, 200, 80)
PRED_COLOR = (230, 40, 40)
IGNORE_COLOR = (255, 255, 255)
#: the colour map of foreground probabilities (0 to 1), e.g. in :func:`plot_iteration`
PROBABILITY_CMAP = "magma"


def denormalize(image: Tensor) -> np.ndarray:
    """ImageNet-normalised ``(3, H, W)`` (or ``(1, 3, H, W)``) tensor -> ``(H, W, 3)`` uint8."""
    t = image.detach().float().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(t.shape)}")
    rgb = denormalise_image(t).mul(255).round().byte()
    return rgb.permute(1, 2, 0).numpy()


def to_rgb(image: Any) -> np.ndarray:
    """Any image the book handles -> ``(H, W, 3)`` uint8 (normalised tensors are denormalised)."""
    if torch.is_tensor(image):
        if image.is_floating_point():
            return denormalize(image)
        image = image.cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[2] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def _mask(mask: Any) -> np.ndarray:
    m = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
    m = np.squeeze(m)
    if m.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {m.shape}")
    return m


def overlay(image: Any, mask: Any, color: Sequence[int] = PRED_COLOR,
            alpha: float = 0.5, show_ignore: bool = False) -> np.ndarray:
    """Blend ``color`` over the pixels where ``mask == 1`` (or ``True``); ``(H, W, 3)`` uint8.

    With ``show_ignore`` the 255 pixels are lightened too.
    """
    rgb = to_rgb(image).astype(np.float32)
    m = _mask(mask)
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"mask size {m.shape} differs from image size {rgb.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    fg = m == 1 if m.dtype != bool else m
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * np.asarray(color, dtype=np.float32)
    if show_ignore and m.dtype != bool:
        ign = m == IGNORE_INDEX
        rgb[ign] = 0.5 * rgb[ign] + 0.5 * np.asarray(IGNORE_COLOR, dtype=np.float32)
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


def draw_outline(ax: Any, mask: Any, color: Sequence[int] = GT_COLOR, label: str | None = None,
                 linestyle: str = "solid") -> None:
    """Outline the pixels where ``mask == 1`` on ``ax`` (a contour with a dark halo).

    Unlike :func:`overlay`, the object inside stays visible, so a green truth on a
    green object still shows. ``label`` adds a legend entry even for an empty mask.
    """
    m = (_mask(mask) == 1).astype(np.float32)
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


def foreground(probs: Any) -> np.ndarray:
    """Foreground probability ``(H, W)`` from ``(2, H, W)``, ``(1, 2, H, W)`` or ``(H, W)``."""
    p = probs.detach().float().cpu().numpy() if torch.is_tensor(probs) else np.asarray(probs)
    if p.ndim == 4:
        p = p[0]
    if p.ndim == 3:
        if p.shape[0] != 2:
            raise ValueError(f"expected (2, H, W) probabilities, got shape {p.shape}")
        p = p[1]
    if p.ndim != 2:
        raise ValueError(f"expected probabilities (2, H, W) or (H, W), got shape {p.shape}")
    return p


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return episode_iou(np.asarray(pred).astype(np.int64), np.asarray(gt).astype(np.int64))


def iou_per_iteration(probs_per_iteration: Sequence[Any], gt: Any) -> list[float]:
    """Foreground IoU (%) of each iteration's mask (probability > 0.5) against ``gt``.

    255 pixels of ``gt`` are ignored; an empty union counts as 100.
    """
    target = _mask(gt)
    out = []
    for probs in probs_per_iteration:
        fg = foreground(probs)
        if fg.shape != target.shape:
            raise ValueError(f"probabilities {fg.shape} and ground truth {target.shape} differ "
                             "in size")
        out.append(_iou(fg > 0.5, target))
    return out


def iteration_name(t: int) -> str:
    """Short name of IOM iteration ``t`` for axes and captions: ``"Init"`` (0), else ``"t"``."""
    return "Init" if t == 0 else str(t)


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
    p = _mask(pred)
    ax.imshow(overlay(image, p, PRED_COLOR))
    if gt is not None:
        title += f"\nIoU {_iou(p == 1, _mask(gt)):.1f}"
    ax.set_title(title)


def _iteration_panel(ax: Any, image: Any, probs: Any, t: int, iou: float | None) -> None:
    """Iteration ``t``'s mask (foreground probability > 0.5, red) over an image."""
    ax.imshow(overlay(image, foreground(probs) > 0.5, PRED_COLOR))
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
                   iou: float | None = None) -> Figure:
    """One IOM iteration: foreground probability, and the mask over the image (+ truth)."""
    rgb = to_rgb(image)
    fg = foreground(probs)
    fig, axes = _row(3 if gt is not None else 2, 3.0, 3.2)
    axes[0].imshow(fg, cmap=PROBABILITY_CMAP, vmin=0.0, vmax=1.0)
    axes[0].set_title("foreground probability")
    _iteration_panel(axes[1], rgb, fg, t, iou)
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
        _iteration_panel(axes[t], rgb, probs, t, ious[t] if ious is not None else None)
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


def plot_iou_per_iteration(series: dict[str, Sequence[float]] | Sequence[float],
                           stds: dict[str, Sequence[float]] | Sequence[float] | None = None,
                           ylabel: str = "mIoU (%)", zero: bool = True) -> Figure:
    """mIoU against IOM iteration for one or several labelled runs (0 = CANet-Init).

    ``series`` is a list of values or ``{label: values}`` (e.g. the
    ``miou_per_iteration`` of several :func:`canetlib.evaluate.evaluate`
    results); ``stds`` the matching standard deviations over seeds. The y axis
    starts at 0 (``zero=False`` zooms in, which makes one point look like ten).
    """
    named = dict(series) if isinstance(series, dict) else {"": list(series)}
    errs = (dict(stds) if isinstance(stds, dict) else {"": list(stds)}) if stds is not None else {}
    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.subplots()
    for label, values in named.items():
        x = np.arange(len(values))
        ax.errorbar(x, values, yerr=errs.get(label), marker="o", capsize=3,
                    label=label or None)
    longest = max(len(v) for v in named.values())
    ax.set_xticks(np.arange(longest))
    ax.set_xticklabels([iteration_name(t) for t in range(longest)])
    ax.set_xlabel("IOM iteration")
    ax.set_ylabel(ylabel)
    if zero:
        top = max(max(v) for v in named.values())
        ax.set_ylim(0, max(10.0, 1.15 * top))
    ax.grid(alpha=0.3)
    if any(named):
        ax.legend(loc="lower right")
    return fig


def plot_paper_vs_ours(paper: dict[str, float], ours: dict[str, float],
                       ours_std: dict[str, float] | None = None, *,
                       paper_label: str = "paper (PASCAL-5i)",
                       ours_label: str = "ours (embedded world)",
                       xlabel: str = "mIoU (%)") -> Figure:
    """The rows of an ablation table as two bar panels, the paper's beside ours.

    Each panel has its own scale (the two benchmarks differ in difficulty),
    so compare the *orderings*; each panel's best row is drawn darker.
    ``ours_std`` adds error bars (std over seeds).
    """
    rows = list(paper)
    missing = [r for r in rows if r not in ours]
    if missing:
        raise ValueError(f"plot_paper_vs_ours: no value of ours for rows {missing}")
    fig = Figure(figsize=(8.0, 0.42 * len(rows) + 1.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))
    panels = ((paper, None, paper_label, "tab:gray"), (ours, ours_std, ours_label, "tab:blue"))
    for ax, (values, stds, label, colour) in zip(axes, panels):
        vals = np.array([values[r] for r in rows], dtype=float)
        err = None if stds is None else np.array([stds.get(r, 0.0) for r in rows], dtype=float)
        alphas = [1.0 if v == vals.max() else 0.45 for v in vals]
        bars = ax.barh(y, vals, xerr=err, color=colour, capsize=3)
        for bar, alpha in zip(bars, alphas):
            bar.set_alpha(alpha)
        lo = float(np.min(vals - (err if err is not None else 0)))
        hi = float(np.max(vals + (err if err is not None else 0)))
        pad = max(0.15 * (hi - lo), 0.5)
        ax.set_xlim(max(0.0, lo - pad), hi + pad)
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(rows)
    axes[0].invert_yaxis()
    return fig
