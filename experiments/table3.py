"""Table 3 of the paper (features compared): train and evaluate one model per block set.

Run from a clone with the package installed (``pip install -e .``)::

    python experiments/table3.py [--rows block2,block2+block3] [--fold 0] [--epochs 3]
        [--out runs/table3] [--results canetlib/teaching/results/table3] [--dry-run]

Each row without a result file is trained and evaluated at CANet-Init by the commands
of :func:`canetlib.teaching.table3.table3_rows` (``python -m canetlib train`` and
``evaluate``, run in this process) and written as one JSON; rows with a result file
are skipped, a killed row resumes. Bad settings print one ``error: ...`` line and exit
with status 2 before anything is trained or printed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from canetlib.cli import main as canetlib_main
from canetlib.cli import run_guarded
from canetlib.model.files import check_writable
from canetlib.teaching import table3
from canetlib.teaching.table3 import BLOCK_SETS, TABLE3_EPOCHS, TABLE3_RESULTS, row_name

DESCRIPTION = "Table 3 (features compared): train and evaluate one model per block set"


def parse_rows(text: str | None, name: str = "rows") -> list[tuple[str, ...]]:
    """``"block2,block2+block3"`` -> block sets; ``None`` = all of ``BLOCK_SETS``.

    Raises:
        ValueError: a row that is not one of Table 3's, or no row at all (``name`` is
            the argument named in the message).
    """
    if text is None:
        return list(BLOCK_SETS)
    known = {row_name(b): b for b in BLOCK_SETS}
    rows = []
    for row in (t.strip() for t in text.split(",") if t.strip()):
        if row not in known:
            raise ValueError(f"{name}: unknown Table 3 row {row!r}; valid rows: "
                             f"{', '.join(known)}")
        rows.append(known[row])
    if not rows:
        raise ValueError(f"{name} names no row, got {text!r}; valid rows: {', '.join(known)} "
                         "(leave it out for all)")
    return rows


def run_table3(*, log: Callable[[str], None] = print,
               cli: Callable[[list[str]], int] = canetlib_main, **kwargs: Any) -> list[Path]:
    """Run the rows of ``table3_rows(**kwargs)`` that have no result file yet.

    A row whose ``model.pt`` exists is not trained again; a row with a ``last.pt``
    but no ``model.pt`` is resumed (``--resume``). ``cli`` runs one command's
    arguments (default: ``python -m canetlib`` in this process). Returns the result
    files written.

    Raises:
        RuntimeError: a command failed (its exit status is named).
    """
    written = []
    rows = table3.table3_rows(**kwargs)  # every setting checked before the first row runs
    for row in rows:
        if row.result.is_file():
            log(f"{row.name}: {row.result} exists, skipped")
            continue
        steps = []
        if not row.model.is_file():
            resume = ["--resume"] if (row.model.parent / "last.pt").is_file() else []
            steps.append(row.train + resume)
        steps.append(row.evaluate)
        for argv in steps:
            log("python -m canetlib " + " ".join(map(shlex.quote, argv)))
            rc = cli(argv)
            if rc:
                raise RuntimeError(f"Table 3 row {row.name}: `{argv[0]}` exited with {rc}")
        written.append(row.result)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python experiments/table3.py", description=DESCRIPTION)
    p.add_argument("--rows", default=None, metavar="A,B",
                   help=f"rows to run (default all): {', '.join(row_name(b) for b in BLOCK_SETS)}")
    p.add_argument("--fold", type=int, default=0, help="fold, 0..3 (default 0)")
    p.add_argument("--epochs", type=int, default=TABLE3_EPOCHS,
                   help=f"training epochs per row (default {TABLE3_EPOCHS})")
    p.add_argument("--config", default="synthetic-1shot", metavar="NAME",
                   help="training config every row shares (default synthetic-1shot; "
                        "synthetic-imagenet-1shot for the ImageNet backbone)")
    p.add_argument("--train-episodes", type=int, default=None, metavar="N",
                   help="training episodes per epoch (default: the config's)")
    p.add_argument("--baseline", choices=["prototype"], default=None,
                   help="also score the training-free prototype matcher on each row's blocks")
    p.add_argument("--episodes", type=int, default=1000, help="test episodes per seed")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--out", default="runs/table3", metavar="DIR", help="training runs")
    p.add_argument("--results", default=TABLE3_RESULTS, metavar="DIR",
                   help=f"one JSON per row (default {TABLE3_RESULTS}, the files the book reads)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return p


def run(args: argparse.Namespace) -> int:
    """Check every setting, then print the commands (``--dry-run``) or run the rows."""
    kw = {"fold": args.fold, "out": args.out, "results": args.results, "epochs": args.epochs,
          "episodes": args.episodes, "seeds": args.seeds, "rows": parse_rows(args.rows, "--rows"),
          "config": args.config, "train_episodes": args.train_episodes,
          "baseline": args.baseline, "flags": True}
    table3.check_table3(fold=args.fold, epochs=args.epochs, episodes=args.episodes,
                        seeds=args.seeds, config=args.config,
                        train_episodes=args.train_episodes, flags=True)
    check_writable(args.out, folder=True)
    check_writable(args.results, folder=True)
    if args.dry_run:
        print("\n".join(table3.table3_commands(**kw)))
        return 0
    written = run_table3(**kw)
    print(f"Table 3: {len(written)} row(s) written to {args.results}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run; exit status as ``python -m canetlib``."""
    args = build_parser().parse_args(argv)
    return run_guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
