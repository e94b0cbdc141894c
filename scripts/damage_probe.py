"""Attention against Feature-Avg when some supports are damaged, on validation episodes (never test).

Rebuilds the first run's validation episodes (:func:`canetlib.training.episodes.build_val_dataset`
of the config in ``RUN/last.pt``: held-out training classes or images) with every support made
small, truncated or occluded with probability ``--damage`` (:mod:`canetlib.data.damage`, seeded
per episode), and scores each run's ``model.pt`` with each of ``--fusions`` on exactly those
episodes, per IOM iteration, mean and sample std over ``--seeds``. With the attention fusion it
also records every support's weight (the softmax of the branch's output, eq. 2) and reports the
mean weight of intact and of damaged supports (by kind; 1/k when the branch does not choose).
The training-free prototype matcher and marking every object are scored on the same episodes::

    python scripts/damage_probe.py /tmp/dmg/plain /tmp/dmg/damaged --damage 0.5 \\
        --episodes 300 --seeds 0,1,2,3,4 --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from canetlib.evaluation import evaluate_seeds, fit_threshold
from canetlib.model import checkpoint
from canetlib.model.baseline import PrototypeMatcher
from canetlib.training.configs import TrainConfig
from canetlib.training.episodes import build_val_dataset, matcher_fit_dataset, validation_config


class WeightRecorder:
    """Every support's attention weight, in the order the evaluator runs the episodes."""

    def __init__(self, model: Any, shots: int) -> None:
        self.shots, self.rows = shots, []  # type: list[torch.Tensor]
        model.attention.register_forward_hook(self._keep)

    def _keep(self, module: Any, inputs: Any, output: torch.Tensor) -> None:
        self.rows.append(output.detach().float().view(-1, self.shots))

    def weights(self) -> torch.Tensor:
        return torch.cat(self.rows) if self.rows else torch.zeros(0, self.shots)


def weight_summary(weights: torch.Tensor, kinds: list[list[str]]) -> dict[str, Any]:
    """Mean weight of intact supports and of each kind of damaged one."""
    if weights.shape[0] != len(kinds):
        raise RuntimeError(f"recorded {weights.shape[0]} episodes of weights, expected "
                           f"{len(kinds)} (did the evaluator run one forward per episode?)")
    groups: dict[str, list[float]] = {}
    for row, ks in zip(weights.tolist(), kinds):
        for w, k in zip(row, ks):
            groups.setdefault(k or "intact", []).append(w)
            if k:
                groups.setdefault("damaged", []).append(w)
    return {k: {"mean_weight": round(sum(v) / len(v), 4), "supports": len(v)}
            for k, v in sorted(groups.items())}


def score(name: str, fusion: str, cfg: TrainConfig, seeds: list[int]) -> dict[str, Any]:
    model = checkpoint.load_model(name, fusion=fusion)
    recorder = WeightRecorder(model, cfg.shots) if fusion == "attention" else None
    kinds: list[list[str]] = []

    def keep_kinds(item: dict[str, Any]) -> dict[str, Any]:
        kinds.append(item.get("support_damage", [""] * cfg.shots))
        return item

    def factory(seed: int) -> Any:
        data = build_val_dataset(cfg.replace(seed=seed))
        data.transform = keep_kinds  # what spoiled each support, as the evaluator reads it
        return data

    res = evaluate_seeds(model, seeds, factory, iterations=4)
    row: dict[str, Any] = {
        "miou_per_iteration": [round(float(v), 2) for v in res["miou_per_iteration"]],
        "miou_per_iteration_std": [round(float(v), 2) for v in res["miou_per_iteration_std"]],
        "miou_per_seed": [round(float(r["miou"]), 2) for r in res["runs"]],
    }
    if recorder is not None:
        row["weights"] = weight_summary(recorder.weights(), kinds)
    return row


def yardsticks(name: str, cfg: TrainConfig, seeds: list[int]) -> dict[str, Any]:
    """The training-free matcher on ``name``'s frozen backbone (threshold fitted on the
    fold's training classes without the held-out ones) and marking every object, on the same
    validation episodes at the run's training size."""
    matcher = PrototypeMatcher.from_model(checkpoint.load_model(name))
    fit = fit_threshold(matcher, matcher_fit_dataset(cfg), input_size=cfg.train_size)
    res = evaluate_seeds(matcher, seeds, lambda seed: build_val_dataset(cfg.replace(seed=seed)),
                         iterations=0, input_size=cfg.train_size)
    return {"matcher": {"miou": round(float(res["miou"]), 2),
                        "miou_std": round(float(res["miou_std"]), 2),
                        "threshold": fit["threshold"], "input_size": cfg.train_size},
            "all_objects_miou": round(float(res["all_objects_miou"]), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (their model.pt is scored)")
    p.add_argument("--damage", type=float, default=0.5, help="support damage probability")
    p.add_argument("--fusions", default="attention,feature-avg",
                   help="fusions to score each run with (none: the yardsticks only)")
    p.add_argument("--episodes", type=int, default=300, help="validation episodes per seed")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        cfg = validation_config(args.runs[0], val_episodes=args.episodes,
                                support_damage=args.damage)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    seeds = [int(s) for s in args.seeds.split(",")]
    out: dict[str, Any] = {}
    for run in args.runs:
        name = str(Path(run) / "model.pt")
        for fusion in [f for f in args.fusions.split(",") if f != "none"]:
            row = score(name, fusion, cfg, seeds)
            out[f"{name} [{fusion}]"] = row
            its = " ".join(f"{v:5.1f}" for v in row["miou_per_iteration"])
            w = row.get("weights", {})
            note = (f"  weight intact {w['intact']['mean_weight']:.3f} damaged "
                    f"{w['damaged']['mean_weight']:.3f}" if "damaged" in w else "")
            print(f"{name} [{fusion}] {its} (sd {row['miou_per_iteration_std'][-1]:.1f}){note}",
                  flush=True)
    sticks = yardsticks(str(Path(args.runs[0]) / "model.pt"), cfg, seeds)
    print(f"matcher {sticks['matcher']['miou']:.1f} (sd {sticks['matcher']['miou_std']:.1f}), "
          f"every object {sticks['all_objects_miou']:.1f}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"validation": {"fold": cfg.fold, "val_by": cfg.val_by, "val_classes": cfg.val_classes,
                        "val_fraction": cfg.val_fraction, "episodes_per_seed": args.episodes,
                        "seeds": seeds, "shots": cfg.shots, "support_damage": args.damage},
         "runs": out, "yardsticks": sticks}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
