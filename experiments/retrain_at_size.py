"""Retrain the book's models at another input size; the evaluation size chosen on validation classes.

A prepared job for a GPU machine (or several CPU sessions), resumable step by step. For each
fold, from the repository root:

1. a held-out-class run at ``--train-size`` (the shipped 1-shot recipe for 2 epochs, three of the
   fold's training classes held out: ``val_by=classes``, ``val_classes=3``);
2. ``scripts/input_size_probe.py`` on it at every ``--eval-sizes`` side (300 validation episodes
   x seeds 0-4; the matcher fitted without the held-out classes);
3. the evaluation size, by the rule of ``data/results/imagenet-backbone/input-size/README.md``
   (fixed before any run): the smallest size whose final-iteration mIoU is within the larger of
   the two seed standard deviations of the best size's;
4. the shipped recipe at ``--train-size``: ``synthetic-imagenet-1shot``, then
   ``synthetic-imagenet-5shot`` initialised from that 1-shot model;
5. the chosen size recorded in a copy of each model (``set-input-size``: ``im1/model-atS.pt``,
   the file to ship), and both scored on 1000 test episodes x 5 seeds at that recorded size,
   the prototype matcher and the every-object yardstick in the same run (``evaluate
   --baseline prototype --json``); the 5-shot model also with Feature-Avg in place of its
   attention (same weights, ``5shot-feature-avg-atS.json``).

``--five-shot-set KEY=VALUE`` (repeatable) changes the 5-shot recipe; that model and its results
then get the values as a tag (``--five-shot-set attention_pool=similar``: ``im5-similar/``,
``5shot-similar-atS.json``), so a fold's earlier 5-shot run stays beside it.

Nothing is chosen on test episodes. Every step is skipped when its output exists, so a killed
job goes on where it stopped; ``OUT/summary.json`` lists each fold's chosen size and files::

    python experiments/retrain_at_size.py --train-size 224 --out runs/retrain224
    python experiments/retrain_at_size.py --quick --out /tmp/r   # the pipeline on tiny counts

``--quick`` shrinks every count (it checks the steps, its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: the counts of a real run and of ``--quick`` (a pipeline check)
FULL = {"val_epochs": 2, "probe_episodes": 300, "probe_seeds": "0,1,2,3,4", "test_episodes": 1000,
        "test_seeds": 5, "extra": []}
QUICK = {"val_epochs": 1, "probe_episodes": 4, "probe_seeds": "0,1", "test_episodes": 4,
         "test_seeds": 2, "extra": ["--set", "episodes=16", "--set", "epochs=1",
                                    "--set", "world_images=20", "--set", "world_base_classes=20",
                                    "--set", "val_episodes=4"]}


def choose_size(probe: dict[str, Any]) -> int:
    """The smallest size tied with the best: ``m(best) - m(s) <= max(sd(best), sd(s))``."""
    scores = {int(s): (r["miou_per_iteration"][-1], r["miou_per_iteration_std"][-1] or 0.0)
              for s, r in probe["sizes"].items()}
    best = max(scores, key=lambda s: scores[s][0])
    tied = [s for s, (m, sd) in scores.items()
            if scores[best][0] - m <= max(scores[best][1], sd)]
    return min(tied)


def run(argv: list[str], done: Path) -> None:
    """Run ``argv`` unless ``done`` exists; a failure stops the job (the output names it)."""
    if done.exists():
        print(f"skip (exists): {done}", flush=True)
        return
    print("+ " + " ".join(argv), flush=True)
    subprocess.run(argv, cwd=ROOT, check=True)


def canetlib(*args: str) -> list[str]:
    return [sys.executable, "-m", "canetlib", *args]


def train(out: Path, *args: str) -> None:
    """``canetlib train ... --out OUT`` unless ``OUT/model.pt`` exists; resumed from
    ``OUT/last.pt`` when a killed run left one."""
    resume = ["--resume"] if (out / "last.pt").is_file() else []
    run(canetlib("train", *args, "--out", str(out), *resume), out / "model.pt")


def fold_job(fold: int, args: argparse.Namespace, counts: dict[str, Any]) -> dict[str, Any]:
    out = Path(args.out) / f"fold{fold}"
    size = ["--set", f"train_size={args.train_size}", *counts["extra"], "--no-progress"]
    held = out / "valcls"
    device = ["--device", args.device] if args.device else []
    train(held, "--config", "synthetic-imagenet-1shot", "--fold", str(fold),
          "--set", f"epochs={counts['val_epochs']}", "--set", "val_by=classes",
          "--set", "val_classes=3", *size, *device)
    probe = out / "validation-sizes.json"
    run([sys.executable, "scripts/input_size_probe.py", str(held), "--sizes", args.eval_sizes,
         "--episodes", str(counts["probe_episodes"]), "--seeds", counts["probe_seeds"],
         "--threads", str(args.threads), "--json", str(probe)], probe)
    chosen = choose_size(json.loads(probe.read_text()))
    tag = "-".join(kv.split("=", 1)[1] for kv in args.five_shot_set)
    one, five = out / "im1", out / ("im5-" + tag if tag else "im5")
    train(one, "--config", "synthetic-imagenet-1shot", "--fold", str(fold), *size, *device)
    recipe = [a for kv in args.five_shot_set for a in ("--set", kv)]
    train(five, "--config", "synthetic-imagenet-5shot", "--fold", str(fold),
          "--set", f"init_checkpoint={one / 'model.pt'}", *recipe, *size, *device)
    why = (f"validation episodes of 3 held-out training classes of fold {fold} "
           f"({counts['probe_episodes']} x seeds {counts['probe_seeds']}): the smallest of "
           f"{args.eval_sizes} px within a seed sd of the best (experiments/retrain_at_size.py)")
    results: dict[str, Any] = {}
    for shots, run_dir, name in ((1, one, "1shot"), (5, five, f"5shot-{tag}" if tag else "5shot")):
        model = run_dir / f"model-at{chosen}.pt"
        run(canetlib("set-input-size", str(run_dir / "model.pt"), "--size", str(chosen),
                     "--chosen-by", why, "--out", str(model)), model)
        fusions = [("", [])] + ([("-feature-avg", ["--fusion", "feature-avg"])] if shots > 1 else [])
        for suffix, fusion in fusions:
            result = out / f"{name}{suffix}-at{chosen}.json"
            run(canetlib("evaluate", "--dataset", "synthetic", "--fold", str(fold), "--shots",
                         str(shots), "--checkpoint", str(model), *fusion, "--baseline",
                         "prototype", "--episodes", str(counts["test_episodes"]), "--seed", "0",
                         "--seeds", str(counts["test_seeds"]), "--json", str(result), *device,
                         "--no-progress"), result)
            results[f"{shots}shot{suffix}"] = str(result)
        results[f"{shots}shot_model"] = str(model)
    return {"train_size": args.train_size, "eval_size": chosen, "probe": str(probe),
            "five_shot_set": list(args.five_shot_set), **results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--train-size", type=int, default=224)
    p.add_argument("--eval-sizes", default="224,256,288,320",
                   help="candidate evaluation sides, comma-separated")
    p.add_argument("--folds", default="0,1,2,3")
    p.add_argument("--out", required=True, help="folder of the runs, results and summary.json")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda if any)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the size probe")
    p.add_argument("--quick", action="store_true", help="tiny counts: checks the pipeline only")
    p.add_argument("--five-shot-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a 5-shot recipe setting (repeatable); tags the 5-shot run and results")
    args = p.parse_args(argv)
    counts = QUICK if args.quick else FULL
    summary_path = Path(args.out) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for fold in (int(f) for f in args.folds.split(",")):
        summary[f"fold{fold}"] = fold_job(fold, args, counts)
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"fold {fold}: evaluated at {summary[f'fold{fold}']['eval_size']} px", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
