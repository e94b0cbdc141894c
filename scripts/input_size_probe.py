"""Score a checkpoint and the prototype matcher at several input sizes on validation episodes.

The episodes are a training run's validation episodes (:func:`canetlib.training.recipe.build_val_dataset`
of the config stored in ``RUN/last.pt``; a run trained with ``val_by=classes`` holds whole
training classes out), never test episodes. At every ``--sizes`` side the run's ``model.pt``
(or ``--checkpoint``) is scored with :func:`canetlib.evaluation.evaluate_seeds` and
``input_size=side`` at every IOM iteration (index 0 = CANet-Init), mean and sample std over
``--seeds``. The training-free prototype matcher on the same frozen backbone gets its
threshold fitted as the evaluator fits it (:func:`canetlib.evaluation.fit_threshold`, 300
test-style episodes of seed 0 of the fold's training classes, at that side) except that the
run's held-out classes and the images showing them are left out of that fit, then it is scored
on the same validation episodes. One JSON is written::

    python scripts/input_size_probe.py /tmp/isz/f0-valcls --sizes 128,160,192,224,256 \\
        --episodes 300 --seeds 0,1,2,3,4 --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from canetlib.evaluation import evaluate_seeds, fit_threshold
from canetlib.evaluation.prototype import BASELINE_FIT_EPISODES, BASELINE_FIT_SEED
from canetlib.model import checkpoint
from canetlib.model.baseline import PrototypeMatcher
from canetlib.training.episodes import build_val_dataset, matcher_fit_dataset, validation_config


def _rounded(values: list[float] | None) -> list[float] | None:
    return None if values is None else [round(float(v), 2) for v in values]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="training run folder (its last.pt defines the validation split)")
    p.add_argument("--checkpoint", default=None,
                   help="score this shipped name or path instead of RUN/model.pt")
    p.add_argument("--sizes", default="128,160,192,224,256")
    p.add_argument("--episodes", type=int, default=300, help="validation episodes per seed")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--no-matcher", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    try:
        cfg = validation_config(run, val_episodes=args.episodes)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    name = args.checkpoint or str(run / "model.pt")
    model = checkpoint.load_model(name)
    probe = build_val_dataset(cfg.replace(seed=seeds[0]))
    held = sorted({int(probe[i]["class_id"]) for i in range(len(probe))})

    def factory(seed: int) -> Any:
        return build_val_dataset(cfg.replace(seed=seed))

    fits = matcher_fit_dataset(cfg) if not args.no_matcher else None
    rows: dict[str, Any] = {}
    for side in sizes:
        t0 = time.time()
        res = evaluate_seeds(model, seeds, factory, iterations=args.iterations, input_size=side)
        row: dict[str, Any] = {
            "miou_per_iteration": _rounded(res["miou_per_iteration"]),
            "miou_per_iteration_std": _rounded(res["miou_per_iteration_std"]),
            "miou_per_seed": [round(float(r["miou"]), 2) for r in res["runs"]],
            "miou_init_per_seed": [round(float(r["miou_per_iteration"][0]), 2)
                                   for r in res["runs"]],
            "all_objects_miou": round(float(res["all_objects_miou"]), 2),
            "per_class_iou": {k: round(float(v), 2) for k, v in res["per_class_iou"].items()},
            "canet_seconds": round(time.time() - t0, 1),
        }
        if fits is not None:
            t1 = time.time()
            matcher = PrototypeMatcher.from_model(model)
            fit = fit_threshold(matcher, fits, input_size=side)
            base = evaluate_seeds(matcher, seeds, factory, iterations=0, input_size=side)
            row["matcher"] = {"miou": round(float(base["miou"]), 2),
                              "miou_std": round(float(base["miou_std"]), 2),
                              "miou_per_seed": [round(float(r["miou"]), 2) for r in base["runs"]],
                              "threshold": fit["threshold"],
                              "fit_miou": round(fit["miou"], 2),
                              "seconds": round(time.time() - t1, 1)}
        rows[str(side)] = row
        per_it, sd = row["miou_per_iteration"], row["miou_per_iteration_std"][-1]
        its = " ".join(f"{v:5.1f}" for v in per_it)
        mt = f"  matcher {row['matcher']['miou']:5.1f}" if "matcher" in row else ""
        print(f"{side:4d} px  init..final {its}  (IOM {per_it[-1] - per_it[0]:+.1f}, sd {sd:.1f})"
              f"{mt}  {row['canet_seconds']:.0f}s", flush=True)
    out = {"checkpoint": name, "run": str(run),
           "trained_at": cfg.train_size, "config": cfg.name,
           "validation": {"fold": cfg.fold, "val_by": cfg.val_by,
                          "val_classes": cfg.val_classes, "val_fraction": cfg.val_fraction,
                          "held_out_class_ids": held, "episodes_per_seed": args.episodes,
                          "seeds": seeds, "shots": cfg.shots},
           "matcher_fit": ("evaluator's fit (fit_threshold, training classes, "
                           f"{BASELINE_FIT_EPISODES} episodes, seed {BASELINE_FIT_SEED}) "
                           "without the held-out classes and their images"),
           "sizes": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
