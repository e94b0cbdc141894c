"""Tables from the result files that ``python -m canetlib evaluate --json FILE`` writes.

The book and the READMEs quote full-budget numbers (1000 episodes x 5 seeds) that
take far longer than a chapter may run. They are measured once by the command
each results README shows and read back here, so every quoted number comes from
a file and every file from a command. The files the book quotes ship in the package
(``canetlib.teaching.shipped.shipped_path("results/imagenet-backbone")``).
:func:`benchmark_table` is the per-fold table with the mean over the folds present,
:func:`variants_table` one row per result file; :func:`replace_block` puts a table between
the markers ``<!-- results:begin -->`` and ``<!-- results:end -->`` of a document
(``scripts/update_tables.py`` does it for the README and the book's introduction).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ResultRow:
    """One evaluation: a checkpoint on one fold, beside the baselines of the same run."""

    path: Path
    fold: int
    shots: int
    checkpoint: str
    #: the k-shot fusion used (None for 1-shot)
    fusion: str | None
    #: "standard", or what differs from the benchmark protocol (box supports, ...)
    variant: str
    seeds: int
    episodes_per_seed: int
    init: tuple[float, float]
    final: tuple[float, float]
    fbiou: tuple[float, float]
    matcher: tuple[float, float] | None
    all_objects: tuple[float, float] | None


def _pair(result: dict[str, Any], key: str) -> tuple[float, float]:
    return float(result[key]), float(result.get(f"{key}_std", 0.0))


def variant_of(settings: dict[str, Any]) -> str:
    """``"standard"`` for the benchmark protocol, else a short name of the change."""
    parts = []
    if settings.get("box_support"):
        parts.append("box supports")
    if list(settings.get("scales", [1.0])) != [1.0]:
        parts.append("scales " + "/".join(f"{s:g}" for s in settings["scales"]))
    if settings.get("dense_crf"):
        post = settings.get("postprocess")
        backend = post.get("backend", "exact") if isinstance(post, dict) else "exact"
        parts.append("DenseCRF" if backend == "exact" else f"DenseCRF ({backend})")
    if settings.get("glyphs", "all") != "all":
        parts.append(f"{settings['glyphs']} glyphs")
    trained = settings.get("trained_fold")
    if trained is not None and trained != settings.get("fold"):
        parts.append(f"seen classes (model of fold {trained})")
    return ", ".join(parts) or "standard"


def read_result(path: str | Path) -> ResultRow:
    """Parse one ``evaluate --json`` file (one or several seeds).

    Raises:
        ValueError: the file is not an evaluation result (the message names it).
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "settings" not in data or "miou" not in data:
        raise ValueError(f"{path}: not a result of `python -m canetlib evaluate --json`")
    s = data["settings"]
    per_iter = data["miou_per_iteration"]
    stds = data.get("miou_per_iteration_std", [0.0] * len(per_iter))
    base = data.get("baselines", {}).get("prototype")
    return ResultRow(
        path=path, fold=int(s["fold"]), shots=int(s["shots"]),
        checkpoint=str(s.get("checkpoint")), fusion=s.get("fusion"), variant=variant_of(s),
        seeds=len(s.get("seeds", [0])), episodes_per_seed=int(s.get("episodes_per_seed", 0)),
        init=(float(per_iter[0]), float(stds[0])), final=_pair(data, "miou"),
        fbiou=_pair(data, "fbiou"),
        matcher=_pair(base, "miou") if base else None,
        all_objects=_pair(data, "all_objects_miou") if "all_objects_miou" in data else None)


def read_results(folder: str | Path) -> list[ResultRow]:
    """Every evaluation result ``folder/foldN/*.json``, sorted by fold, shots and path.

    Only the files directly in a fold's folder are read: files in subfolders (experiments
    such as ``fold0/experiment/``) and other JSON files there are not the shipped models'
    results."""
    rows = []
    for path in sorted(Path(folder).glob("fold*/*.json")):
        try:
            rows.append(read_result(path))
        except (ValueError, KeyError, json.JSONDecodeError):
            continue  # other JSON files (probe summaries, ...) live there too
    return sorted(rows, key=lambda r: (r.fold, r.shots, str(r.path)))


def pick(rows: Sequence[ResultRow], **match: Any) -> ResultRow | None:
    """The first row whose fields equal every ``match`` value (e.g. ``fold=0, shots=5,
    fusion="mask-avg", variant="standard"``), or None."""
    for r in rows:
        if all(getattr(r, k) == v for k, v in match.items()):
            return r
    return None


def require(rows: Sequence[ResultRow], **match: Any) -> ResultRow:
    """The row :func:`pick` finds.

    Raises:
        LookupError: no row matches (the message names ``match``).
    """
    row = pick(rows, **match)
    if row is None:
        raise LookupError(f"no result file with {match} among {len(rows)} results")
    return row


def _fmt(value: tuple[float, float] | None) -> str:
    return "-" if value is None else f"{value[0]:.1f} ± {value[1]:.1f}"


def _mean(values: Sequence[tuple[float, float] | None]) -> str:
    if not values or any(v is None for v in values):
        return "-"
    return f"{sum(v[0] for v in values if v is not None) / len(values):.1f}"


def benchmark_table(rows: Sequence[ResultRow], folds: int = 4) -> str:
    """Markdown: the standard-protocol rows per fold and shots, the mean over the folds.

    A mean is printed only for a number of shots measured on all ``folds`` folds;
    the other rows say how many folds they cover.
    """
    standard = [r for r in rows if r.variant == "standard"
                and (r.shots == 1 and r.fusion is None or r.shots > 1 and r.fusion == "attention")]
    # narrow enough for a book page: the checkpoint is `synthetic-imagenet-{shots}shot-fold{fold}`
    # style and the budget is the same for every row (both stated beside the table)
    header = "| fold | shots | CANet-Init | CANet (final) | prototype matcher | every object |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in standard:
        lines.append(f"| {r.fold} | {r.shots} | {_fmt(r.init)} | **{_fmt(r.final)}** | "
                     f"{_fmt(r.matcher)} | {_fmt(r.all_objects)} |")
    for shots in sorted({r.shots for r in standard}):
        group = {r.fold: r for r in standard if r.shots == shots}
        if len(group) == folds:
            g = list(group.values())
            lines.append(f"| mean of {folds} | {shots} | {_mean([r.init for r in g])} | "
                         f"**{_mean([r.final for r in g])}** | {_mean([r.matcher for r in g])} "
                         f"| {_mean([r.all_objects for r in g])} |")
        else:
            lines.append(f"| mean | {shots} | measured on {len(group)} of {folds} folds: "
                         "no mean | | | |")
    return "\n".join(lines)


def variants_table(rows: Sequence[ResultRow]) -> str:
    """Markdown: every result beside its fold's standard row of the same checkpoint."""
    header = ("| fold | shots | checkpoint | fusion | setting | CANet-Init | CANet (final) "
              "| budget |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.fold} | {r.shots} | `{r.checkpoint}` | {r.fusion or '-'} | "
                     f"{r.variant} | {_fmt(r.init)} | {_fmt(r.final)} | "
                     f"{r.seeds} x {r.episodes_per_seed} |")
    return "\n".join(lines)


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def markers(tag: str) -> tuple[str, str]:
    """The begin and end markers of a block: ``<!-- TAG:begin -->``, ``<!-- TAG:end -->``."""
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def replace_block(text: str, table: str, name: str = "the file", tag: str = "results") -> str:
    """``text`` with the part between the ``tag`` block's markers replaced by ``table``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    begin, end_mark = markers(tag)
    start, end = text.find(begin), text.find(end_mark)
    if start < 0 or end < start:
        raise ValueError(f"{name} has no {begin} ... {end_mark} block")
    return text[:start + len(begin)] + "\n\n" + table + "\n\n" + text[end:]


def read_block(text: str, tag: str = "results") -> str | None:
    """The text between the ``tag`` block's markers, stripped, or None."""
    begin, end_mark = markers(tag)
    start, end = text.find(begin), text.find(end_mark)
    return None if start < 0 or end < start else text[start + len(begin):end].strip()
