"""Ablations that need one trained model per row: the paper's Table 3.

Table 3 of the paper (section 5.1.3) compares which backbone features the
dense comparison uses (block2, block3, block4 and their combinations) on
PASCAL-5i 1-shot, "without iterative optimization", and finds block2 + block3
best (paper, Table 3). Each row is its own trained model, so the rows
are run by commands rather than in a notebook cell:

* every row starts from the same frozen backbone (the shipped
  ``synthetic-backbone``, pretrained with block2, block3 and block4 for this
  reason) and differs from the others only in ``blocks``;
* our reading of "without iterative optimization": the IOM input is always
  the empty mask during training (``mask_dropout=1.0``) and the row is
  evaluated at CANet-Init (``--iterations 0``);
* to fit seven trainings on a CPU, each row trains for ``epochs`` epochs of the
  ``synthetic-1shot`` schedule (poly decay over that shorter run) instead of
  the shipped model's 8; the rows are compared with one another, not with the
  shipped model.

:func:`table3_commands` gives the exact commands (the book prints them and
``python experiments/table3.py`` runs them from a clone); :func:`load_table3` reads
the result files they write, by default those shipped in
``canetlib/teaching/results/table3``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canetlib.teaching.shipped import shipped_path

#: where the rows are written from the repository root: the shipped result files
TABLE3_RESULTS = "canetlib/teaching/results/table3"

#: the block sets of Table 3, in the paper's order
BLOCK_SETS: tuple[tuple[str, ...], ...] = (
    ("block2",), ("block3",), ("block4",), ("block2", "block3"), ("block3", "block4"),
    ("block2", "block4"), ("block2", "block3", "block4"))

#: Table 3 of the paper: PASCAL-5i 1-shot mIoU (%) without IOM, per block set
PAPER_TABLE3: dict[str, float] = {
    "block2": 46.6, "block3": 50.8, "block4": 48.4, "block2+block3": 51.2,
    "block3+block4": 49.2, "block2+block4": 49.6, "block2+block3+block4": 49.5}

#: epochs per Table 3 row (of the ``synthetic-1shot`` schedule, which ships 8)
TABLE3_EPOCHS = 3


def row_name(blocks: Sequence[str]) -> str:
    """``("block2", "block3")`` -> ``"block2+block3"`` (the file and folder name)."""
    return "+".join(blocks)


def table3_configs() -> list[str]:
    """The training configs a Table 3 row may use: 1-shot on the synthetic world, which
    the rows' ``evaluate --dataset synthetic --shots 1`` tests."""
    from canetlib.training.configs import CONFIGS, TrainConfig

    return [name for name, cfg in CONFIGS.items()
            if isinstance(cfg, TrainConfig) and cfg.dataset == "synthetic" and cfg.shots == 1]


def check_table3(*, fold: int, epochs: int, episodes: int, seeds: int, config: str,
                 train_episodes: int | None, flags: bool = False) -> None:
    """Every Table 3 setting, before any training: one ``ValueError`` naming the argument
    (its command-line flag with ``flags=True``), its value and what is allowed."""
    from canetlib.data.pascal import NUM_FOLDS
    from canetlib.model.inputs import check_at_least
    from canetlib.training.configs import get_config

    def named(key: str) -> str:
        return "--" + key.replace("_", "-") if flags else key

    allowed = table3_configs()
    if config not in allowed:
        raise ValueError(f"{named('config')} must be one of {', '.join(allowed)} (a 1-shot "
                         f"config of the synthetic world, which the rows are tested on), "
                         f"got {config!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < NUM_FOLDS:
        raise ValueError(f"{named('fold')} must be in 0..{NUM_FOLDS - 1} (synthetic has "
                         f"{NUM_FOLDS} folds), got {fold!r}")
    check_at_least(epochs, 1, named("epochs"), "training epochs per row")
    check_at_least(episodes, 1, named("episodes"), "test episodes per seed")
    check_at_least(seeds, 1, named("seeds"), "seeds 0..N-1")
    if train_episodes is not None:
        batch = get_config(config).batch_size
        check_at_least(train_episodes, batch, named("train_episodes"),
                       f"training episodes per epoch, at least one batch of {config}")


@dataclass(frozen=True)
class Table3Row:
    """The two commands of one Table 3 row and where they write."""

    name: str
    train: list[str]
    evaluate: list[str]
    model: Path
    result: Path


def table3_rows(*, fold: int = 0, out: str | os.PathLike[str] = "runs/table3",
                results: str | os.PathLike[str] = TABLE3_RESULTS,
                epochs: int = TABLE3_EPOCHS, episodes: int = 1000, seeds: int = 5,
                rows: Iterable[Sequence[str]] = BLOCK_SETS, config: str = "synthetic-1shot",
                train_episodes: int | None = None, baseline: str | None = None,
                flags: bool = False) -> list[Table3Row]:
    """The train and evaluate argument lists of each row (validated by ``get_config``).

    ``config`` is the training recipe every row shares (``synthetic-1shot``: the
    glyph-pretrained narrow ResNet; ``synthetic-imagenet-1shot``: EfficientNet-Lite0
    with ImageNet weights); ``train_episodes`` overrides its episodes per epoch;
    ``baseline="prototype"`` scores the training-free matcher on the same blocks and
    episodes in the same run. Every setting is checked first (:func:`check_table3`; with
    ``flags=True`` errors name the command-line flags).
    """
    from canetlib.training.configs import get_config

    check_table3(fold=fold, epochs=epochs, episodes=episodes, seeds=seeds, config=config,
                 train_episodes=train_episodes, flags=flags)
    made = []
    for blocks in rows:
        name = row_name(blocks)
        overrides = [f"blocks={','.join(blocks)}", "mask_dropout=1.0", f"epochs={epochs}"]
        if train_episodes is not None:
            overrides.append(f"episodes={train_episodes}")
        get_config(config, overrides)  # raises on a bad override
        run_dir = Path(out) / name
        result = Path(results) / f"{name}.json"
        train = ["train", "--config", config, "--fold", str(fold)]
        for o in overrides:
            train += ["--set", o]
        train += ["--out", str(run_dir)]
        evaluate = ["evaluate", "--dataset", "synthetic", "--fold", str(fold), "--shots", "1",
                    "--checkpoint", str(run_dir / "model.pt"), "--iterations", "0",
                    "--episodes", str(episodes), "--seed", "0", "--seeds", str(seeds),
                    "--json", str(result)]
        if baseline:
            evaluate += ["--baseline", baseline]
        made.append(Table3Row(name, train, evaluate, run_dir / "model.pt", result))
    return made


def table3_commands(**kwargs: Any) -> list[str]:
    """The shell commands of :func:`table3_rows`, two per row."""
    lines = []
    for row in table3_rows(**kwargs):
        for argv in (row.train, row.evaluate):
            lines.append(" ".join(["python -m canetlib", *map(shlex.quote, argv)]))
    return lines


def load_table3(results: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The result JSON of every Table 3 row present in ``results`` (default: the shipped
    files), by row name."""
    folder = shipped_path("results/table3") if results is None else Path(results)
    found = {}
    for blocks in BLOCK_SETS:
        path = folder / f"{row_name(blocks)}.json"
        if path.is_file():
            found[row_name(blocks)] = json.loads(path.read_text())
    return found
