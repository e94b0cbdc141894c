"""Score checkpoints per IOM iteration on a training run's validation episodes (never test).

A run trained with ``val_fraction`` (held-out images of the fold's training classes) or
``val_by=classes`` (held-out training classes) keeps that split out of training. This
script rebuilds the first run's validation episodes (:func:`canetlib.training.recipe.build_val_dataset`
of the config stored in ``RUN/last.pt``) and scores every checkpoint given on exactly those
episodes, per IOM iteration (index 0 = CANet-Init), so that training recipes can be compared
without looking at a test episode:

    python scripts/validate_runs.py /tmp/iomexp/memory /tmp/iomexp/own \\
        --checkpoint synthetic-imagenet-1shot-fold0 --episodes 1000 --json out.json

Each RUN contributes ``RUN/model.pt``; ``--checkpoint`` adds shipped names or paths;
``--fusions attention,feature-avg`` scores each k-shot checkpoint with each fusion.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from canetlib.evaluation import evaluate
from canetlib.model import checkpoint
from canetlib.training.episodes import build_val_dataset, validation_config


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (their model.pt is scored)")
    p.add_argument("--checkpoint", action="append", default=[],
                   help="also score this shipped name or path (repeatable)")
    p.add_argument("--fusions", default=None, metavar="A,B",
                   help="k-shot runs: score every checkpoint with each of these fusions "
                        "(e.g. attention,feature-avg); default: the checkpoint's own")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    try:
        cfg = validation_config(args.runs[0], val_episodes=args.episodes, seed=args.seed)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    dataset = build_val_dataset(cfg)
    names = [str(Path(r) / "model.pt") for r in args.runs] + list(args.checkpoint)
    out: dict[str, list[float]] = {}
    fusions = args.fusions.split(",") if args.fusions else [None]
    for name in names:
        for fusion in fusions:
            model = (checkpoint.load_model(name) if fusion is None
                     else checkpoint.load_model(name, fusion=fusion))
            res = evaluate(model, dataset, iterations=4, progress=False)
            key = name if fusion is None else f"{name} [{fusion}]"
            out[key] = [round(v, 2) for v in res["miou_per_iteration"]]
            its = " ".join(f"{v:5.1f}" for v in out[key])
            print(f"{key:60s} init..final: {its}  (IOM gain {out[key][-1] - out[key][0]:+.1f})",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"validation": {"val_by": cfg.val_by, "val_fraction": cfg.val_fraction,
                            "episodes": args.episodes, "seed": args.seed, "fold": cfg.fold},
             "miou_per_iteration": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
