"""Attention against Feature-Avg when some supports are damaged, on validation episodes (never test).

Rebuilds the first run's validation episodes (:func:`canetlib.training.episodes.build_val_dataset`
of the config in ``RUN/last.pt``: held-out training classes or images) with every support made
small, truncated or occluded with probability ``--damage`` (:mod:`canetlib.data.damage`, seeded
per episode), and scores each run's ``model.pt`` with each of ``--fusions`` on exactly those
episodes, per IOM iteration, mean and sample std over ``--seeds``. With the attention fusion it
also records every support's weight (the softmax of the branch's output, eq. 2) and reports the
mean weight of intact and of damaged supports (by kind; 1/k when the branch does not choose).
On the embedded world it also splits the weights, over the episodes whose supports are of both
kinds, by whether a support shows the query's drawing (``attention_by_drawing.py``). Every model
runs at its own side unless ``--input-size`` is given. The training-free prototype matcher and
marking every object are scored on the same episodes (at ``--input-size``, else the training
size)::

    python scripts/damage_probe.py /tmp/dmg/plain /tmp/dmg/damaged --damage 0.5 \\
        --episodes 300 --seeds 0,1,2,3,4 --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from attention_by_drawing import weights_by_drawing

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


def drawing_world(source: Any) -> Any:
    """The embedded world under ``source``'s wrappers, or ``None`` (a source without drawings)."""
    while not hasattr(source, "shares_drawing"):
        if not hasattr(source, "inner"):
            return None
        source = source.inner
    return source


def score(name: str, fusion: str, cfg: TrainConfig, seeds: list[int],
          input_size: int | None = None) -> dict[str, Any]:
    model = checkpoint.load_model(name, fusion=fusion)
    recorder = WeightRecorder(model, cfg.shots) if fusion == "attention" else None
    kinds: list[list[str]] = []
    shows: list[list[bool]] = []

    def factory(seed: int) -> Any:
        data = build_val_dataset(cfg.replace(seed=seed))
        world = drawing_world(data.source)

        def keep_kinds(item: dict[str, Any]) -> dict[str, Any]:
            kinds.append(item.get("support_damage", [""] * cfg.shots))
            if world is not None:
                shows.append([world.shares_drawing(item["query_id"], [s], item["class_id"])
                              for s in item["support_ids"]])
            return item

        data.transform = keep_kinds  # what each support is, as the evaluator reads it
        return data

    res = evaluate_seeds(model, seeds, factory, iterations=4, input_size=input_size)
    row: dict[str, Any] = {
        "miou_per_iteration": [round(float(v), 2) for v in res["miou_per_iteration"]],
        "miou_per_iteration_std": [round(float(v), 2) for v in res["miou_per_iteration_std"]],
        "miou_per_seed": [round(float(r["miou"]), 2) for r in res["runs"]],
    }
    if recorder is not None:
        weights = recorder.weights()
        row["weights"] = weight_summary(weights, kinds)
        if shows:
            row["weights_by_drawing"] = weights_by_drawing(weights.tolist(), shows)
    return row


def yardsticks(name: str, cfg: TrainConfig, seeds: list[int],
               input_size: int | None = None) -> dict[str, Any]:
    """The training-free matcher on ``name``'s frozen backbone (threshold fitted on the
    fold's training classes without the held-out ones) and marking every object, on the same
    validation episodes at ``input_size`` (else the run's training size)."""
    side = input_size or cfg.train_size
    matcher = PrototypeMatcher.from_model(checkpoint.load_model(name))
    fit = fit_threshold(matcher, matcher_fit_dataset(cfg), input_size=side)
    res = evaluate_seeds(matcher, seeds, lambda seed: build_val_dataset(cfg.replace(seed=seed)),
                         iterations=0, input_size=side)
    return {"matcher": {"miou": round(float(res["miou"]), 2),
                        "miou_std": round(float(res["miou_std"]), 2),
                        "threshold": fit["threshold"], "input_size": side},
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
    p.add_argument("--input-size", type=int, default=None,
                   help="side every model and yardstick runs at (default: each model's own)")
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
            row = score(name, fusion, cfg, seeds, args.input_size)
            out[f"{name} [{fusion}]"] = row
            its = " ".join(f"{v:5.1f}" for v in row["miou_per_iteration"])
            w = row.get("weights", {})
            note = (f"  weight intact {w['intact']['mean_weight']:.3f} damaged "
                    f"{w['damaged']['mean_weight']:.3f}" if "damaged" in w else "")
            d = row.get("weights_by_drawing", {})
            if d.get("mixed_episodes"):
                note += (f"  weight query's drawing {d['mean_weight_same_drawing']:.3f} other "
                         f"{d['mean_weight_other_drawings']:.3f}")
            print(f"{name} [{fusion}] {its} (sd {row['miou_per_iteration_std'][-1]:.1f}){note}",
                  flush=True)
    sticks = yardsticks(str(Path(args.runs[0]) / "model.pt"), cfg, seeds, args.input_size)
    print(f"matcher {sticks['matcher']['miou']:.1f} (sd {sticks['matcher']['miou_std']:.1f}), "
          f"every object {sticks['all_objects_miou']:.1f}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"validation": {"fold": cfg.fold, "val_by": cfg.val_by, "val_classes": cfg.val_classes,
                        "val_fraction": cfg.val_fraction, "episodes_per_seed": args.episodes,
                        "seeds": seeds, "shots": cfg.shots, "support_damage": args.damage,
                        "input_size": args.input_size},
         "runs": out, "yardsticks": sticks}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
