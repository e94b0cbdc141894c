"""Charts of numbers for the book: mIoU per IOM iteration, an ablation's rows beside the paper's.

Each function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["iteration_name", "plot_iou_per_iteration", "plot_paper_vs_ours"]


def iteration_name(t: int) -> str:
    """Short name of IOM iteration ``t`` for axes and captions: ``"Init"`` (0), else ``"t"``."""
    return "Init" if t == 0 else str(t)


def plot_iou_per_iteration(series: dict[str, Sequence[float]] | Sequence[float],
                           stds: dict[str, Sequence[float]] | Sequence[float] | None = None,
                           ylabel: str = "mIoU (%)", zero: bool = True) -> Figure:
    """mIoU against IOM iteration for one or several labelled runs (0 = CANet-Init).

    ``series`` is a list of values or ``{label: values}`` (e.g. the
    ``miou_per_iteration`` of several :func:`canetlib.evaluation.evaluate`
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
