"""ipywidgets for the book: IOM iterations, k-shot attention, episode browsing.

Each explorer computes what it shows up front or once per episode (the
backbone never re-runs when a control moves), keeps its state on the
instance (no globals), and draws with the same :mod:`canetlib.teaching.visual`
functions that make the book's static figures, as JPEG frames at their
natural pixel size with a colour key under each caption. The package is
split by job: :mod:`~canetlib.teaching.widgets.runs` runs an episode as the evaluator
does (:func:`run_episode`, :class:`EpisodeRun`), :mod:`~canetlib.teaching.widgets.frame`
turns a figure into a frame, :mod:`~canetlib.teaching.widgets.key` writes the colour
key, :mod:`~canetlib.teaching.widgets.explorer` holds what every explorer shares, and
:mod:`~canetlib.teaching.widgets.iterations`, :mod:`~canetlib.teaching.widgets.attention` and
:mod:`~canetlib.teaching.widgets.browser` are the three explorers
(:class:`IterationExplorer`, :class:`AttentionExplorer`, :class:`EpisodeBrowser`), and
:mod:`~canetlib.teaching.widgets.static` writes each explorer as a static HTML figure that moves
without a kernel (what the published book shows). Everything is importable from
``canetlib.teaching.widgets`` itself.
"""

from __future__ import annotations

from canetlib.teaching.widgets.attention import AttentionExplorer
from canetlib.teaching.widgets.browser import EpisodeBrowser
from canetlib.teaching.widgets.frame import FRAME_DPI, FRAME_FORMAT, FRAME_MAX_WIDTH
from canetlib.teaching.widgets.iterations import IterationExplorer
from canetlib.teaching.widgets.key import GROUND_TRUTH, IGNORED, PREDICTION, SUPPORT_MASK
from canetlib.teaching.widgets.runs import (
    EpisodeRun,
    InputSize,
    Item,
    iterations_of,
    run_episode,
)
from canetlib.teaching.widgets.static import StaticFigure, static_page, write_static_page

__all__ = [
    "FRAME_DPI", "FRAME_FORMAT", "FRAME_MAX_WIDTH", "GROUND_TRUTH", "IGNORED", "PREDICTION",
    "SUPPORT_MASK", "AttentionExplorer", "EpisodeBrowser", "EpisodeRun", "InputSize", "Item",
    "IterationExplorer", "StaticFigure", "iterations_of", "run_episode",
    "static_page", "write_static_page",
]
