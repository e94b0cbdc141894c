"""``ablate``: run the ablation that needs one trained model per row (Table 3).

``python -m canetlib ablate [--rows block2,block2+block3] [--fold 0] [--epochs 3]
[--out runs/table3] [--results canetlib/results/table3] [--dry-run]`` trains each
missing row, evaluates it at CANet-Init and writes one JSON per row; rows with a
result file are skipped, a killed row resumes. See :mod:`canetlib.ablations`.
"""

from __future__ import annotations

import argparse

from canetlib.ablations import BLOCK_SETS, TABLE3_EPOCHS, TABLE3_RESULTS, row_name

HELP = "Table 3 (features compared): train and evaluate one model per block set"


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from canetlib.ablations import check_table3, parse_rows, run_table3, table3_commands
    from canetlib.fsutil import check_writable

    kw = {"fold": args.fold, "out": args.out, "results": args.results, "epochs": args.epochs,
          "episodes": args.episodes, "seeds": args.seeds, "rows": parse_rows(args.rows, "--rows"),
          "config": args.config, "train_episodes": args.train_episodes,
          "baseline": args.baseline, "flags": True}
    check_table3(fold=args.fold, epochs=args.epochs, episodes=args.episodes, seeds=args.seeds,
                 config=args.config, train_episodes=args.train_episodes, flags=True)
    check_writable(args.out, folder=True)
    check_writable(args.results, folder=True)
    if args.dry_run:
        print("\n".join(table3_commands(**kw)))
        return 0
    written = run_table3(**kw)
    print(f"Table 3: {len(written)} row(s) written to {args.results}")
    return 0
