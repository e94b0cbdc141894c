"""Choosing training settings on validation classes, never on test classes.

``scripts/val_sweep.sh`` trains variants of a config side by side, each
validated on training classes held out of its training (``val_by=classes``,
:class:`canetlib.training.episodes.HeldOutSource`), and writes one summary JSON per round
(variant name -> validation rows ``{"epoch", "miou", "fbiou"}``). This module
reads those summaries and applies this rule:

* each variant is scored by its validation mIoU at its **last** epoch (the
  checkpoint a run ships; no epoch is picked by validation either);
* the noise level is the difference between two runs of the unchanged config
  that differ only in the training seed (``base`` and ``repeat``);
* the best variant is adopted only if it beats ``base`` by more than that noise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: a sweep summary: variant name -> validation rows ``{"epoch", "miou", "fbiou"}``
Summary = dict[str, list[dict[str, Any]]]


def load_sweep(folder: str | os.PathLike[str]) -> Summary:
    """Merge every ``round*.json`` in ``folder`` (later rounds may not reuse a name).

    Returns an empty dict when the folder is missing. The book's sweep ships in the
    package: ``load_sweep(shipped_path("results/val_sweep"))`` (:mod:`canetlib.teaching.shipped`).

    Raises:
        ValueError: a variant name that occurs in two rounds.
    """
    merged: Summary = {}
    root = Path(folder)
    if not root.is_dir():
        return merged
    for path in sorted(root.glob("round*.json")):
        for name, rows in json.loads(path.read_text()).items():
            if name in merged:
                raise ValueError(f"variant {name!r} occurs twice (again in {path.name})")
            merged[name] = list(rows)
    return merged


def final_scores(summary: Summary) -> dict[str, float]:
    """Validation mIoU at each variant's last validated epoch (variants with none left out)."""
    return {name: float(max(rows, key=lambda r: r["epoch"])["miou"])
            for name, rows in summary.items() if rows}


@dataclass(frozen=True)
class SweepDecision:
    """The outcome of :func:`decide`."""

    scores: dict[str, float]
    base: float
    noise: float
    best: str
    gain: float

    @property
    def adopt(self) -> bool:
        """True when the best variant beats the base by more than the seed noise."""
        return self.gain > self.noise


def decide(summary: Summary, base: str = "base", repeat: str = "base-seed1") -> SweepDecision:
    """Apply the module's rule: adopt the best variant only if ``gain > noise``.

    Raises:
        ValueError: ``base`` or ``repeat`` missing, or no other variant.
    """
    scores = final_scores(summary)
    for name in (base, repeat):
        if name not in scores:
            raise ValueError(f"the sweep has no validated run {name!r}; runs: {sorted(scores)}")
    others = {n: s for n, s in scores.items() if n not in (base, repeat)}
    if not others:
        raise ValueError("the sweep has no variant besides the base runs")
    best = max(others, key=others.__getitem__)
    return SweepDecision(scores=scores, base=scores[base],
                         noise=abs(scores[base] - scores[repeat]), best=best,
                         gain=others[best] - scores[base])
