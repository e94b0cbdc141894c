"""The colour key at the end of every explorer caption: what each overlay colour means.

The colours are those of :mod:`canetlib.teaching.visual` (:data:`~canetlib.teaching.visual.GT_COLOR`
and friends); :func:`colour_key` writes one line of HTML with a swatch and a
label per entry (:data:`GROUND_TRUTH`, :data:`PREDICTION`, :data:`SUPPORT_MASK`,
:data:`IGNORED`), optionally preceded by the foreground-probability scale drawn
from :data:`~canetlib.teaching.visual.PROBABILITY_CMAP`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from canetlib.teaching import visual

__all__ = ["GROUND_TRUTH", "IGNORED", "PREDICTION", "SUPPORT_MASK", "colour_key"]

#: what the overlay colours of :mod:`canetlib.teaching.visual` mean
GROUND_TRUTH = (visual.GT_COLOR, "ground truth")
PREDICTION = (visual.PRED_COLOR, "prediction")
SUPPORT_MASK = (visual.GT_COLOR, "support mask")
IGNORED = (visual.IGNORE_COLOR, "ignored border")

def _css_rgb(color: Sequence[int]) -> str:
    r, g, b = (int(c) for c in color)
    return f"rgb({r}, {g}, {b})"


def _swatch(color: Sequence[int], label: str) -> str:
    """A coloured square followed by its label (HTML), kept on one line."""
    return (f'<span style="white-space: nowrap"><span style="display: inline-block; '
            f'width: 0.8em; height: 0.8em; vertical-align: -0.1em; border: 1px solid #777; '
            f'background: {_css_rgb(color)}"></span>&nbsp;{html.escape(label)}</span>')


def _probability_stops(n: int = 6) -> list[str]:
    """``n`` evenly spaced hex colours of :data:`canetlib.teaching.visual.PROBABILITY_CMAP`, 0 to 1."""
    import matplotlib
    from matplotlib.colors import to_hex

    cmap = matplotlib.colormaps[visual.PROBABILITY_CMAP]
    return [to_hex(cmap(i / (n - 1))) for i in range(n)]


def _probability_scale() -> str:
    """The foreground-probability colour scale, 0 to 1 (HTML)."""
    return ('<span style="white-space: nowrap">foreground probability 0&nbsp;'
            '<span style="display: inline-block; width: 4em; height: 0.8em; '
            'vertical-align: -0.1em; border: 1px solid #777; background: '
            f'linear-gradient(to right, {", ".join(_probability_stops())})"></span>&nbsp;1</span>')


def colour_key(entries: Sequence[tuple[Sequence[int], str]], probability: bool = False) -> str:
    """One line of HTML naming what each overlay colour means: ``[(rgb, label), ...]``.

    ``probability`` adds the foreground-probability colour scale (0 to 1).
    """
    parts = [_swatch(c, label) for c, label in entries]
    if probability:
        parts.insert(0, _probability_scale())
    return '<div class="canet-colour-key">' + " &nbsp; ".join(parts) + "</div>"
