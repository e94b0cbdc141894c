"""Does the support show the query's drawing? Episode IoU split by that, per class.

Most classes of the embedded world have several drawings (glyphs). An episode's support and
query may show the same drawing of the target class or only different ones; this probe runs
a model on the fold's seeded test episodes (as the evaluator does, at the model's own size),
asks the world which episodes share a drawing (``SyntheticSource.shares_drawing``) and reports, per class, the share of episodes whose support shares a drawing with the query
and the mean episode IoU of the two groups, at CANet-Init and at the final iteration::

    python scripts/drawing_match.py --checkpoint synthetic-imagenet-1shot-fold0 --fold 0 \\
        --episodes 1000 --json drawing-match.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from canetlib.data import PASCAL_CLASSES, make_dataset
from canetlib.evaluation import evaluate
from canetlib.model import checkpoint


def split_by_drawing(classes: list[int], same: list[bool], ious: list[float],
                     init_ious: list[float] | None = None
                     ) -> dict[str, dict[str, float | int | None]]:
    """Per class: episodes, the share (%) sharing a drawing, mean final IoU of each group
    (and mean CANet-Init IoU, given ``init_ious``)."""
    init = init_ious if init_ious is not None else [0.0] * len(ious)
    groups: dict[int, dict[bool, list[tuple[float, float]]]] = defaultdict(
        lambda: {True: [], False: []})
    for c, s, v, v0 in zip(classes, same, ious, init):
        groups[c][s].append((v, v0))

    def mean(pairs: list[tuple[float, float]], at: int) -> float | None:
        return round(sum(p[at] for p in pairs) / len(pairs), 1) if pairs else None

    table: dict[str, dict[str, float | int | None]] = {}
    for c, g in sorted(groups.items()):
        n = len(g[True]) + len(g[False])
        row: dict[str, float | int | None] = {
            "episodes": n, "same_drawing_percent": round(100 * len(g[True]) / n, 1),
            "mean_iou_same_drawing": mean(g[True], 0),
            "mean_iou_other_drawings": mean(g[False], 0)}
        if init_ious is not None:
            row["init_iou_same_drawing"] = mean(g[True], 1)
            row["init_iou_other_drawings"] = mean(g[False], 1)
        table[PASCAL_CLASSES[c - 1]] = row
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = checkpoint.load_model(args.checkpoint).eval()
    ds = make_dataset("synthetic", fold=args.fold, split="test", shots=1,
                      episodes=args.episodes, seed=args.seed)
    specs = [ds.spec(i) for i in range(len(ds))]
    same = [ds.source.shares_drawing(s.query_id, s.support_ids, s.class_id) for s in specs]
    result = evaluate(model, ds, device="cpu", per_episode=True, progress=False)
    ious = [ep["iou_per_iteration"][-1] for ep in result["per_episode"]]
    init = [ep["iou_per_iteration"][0] for ep in result["per_episode"]]
    table = split_by_drawing([s.class_id for s in specs], same, ious, init)
    for name, row in table.items():
        print(f"{name:<12} {row['episodes']:>5} episodes, same drawing "
              f"{row['same_drawing_percent']:5.1f}%  mean IoU (Init -> final) same "
              f"{row['init_iou_same_drawing']} -> {row['mean_iou_same_drawing']}, other "
              f"{row['init_iou_other_drawings']} -> {row['mean_iou_other_drawings']}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "checkpoint": args.checkpoint, "fold": args.fold, "episodes": args.episodes,
            "seed": args.seed, "input_size": result["settings"]["input_size"],
            "miou": round(result["miou"], 2), "per_class": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
