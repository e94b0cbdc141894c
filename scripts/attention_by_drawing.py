"""Does the attention branch weight the supports that show the query's drawing higher?

In a k-shot episode of the embedded world some supports may draw the target class with a
glyph the query also shows and others only with other glyphs; on its own, a support of the
first kind segments the query far better (``scripts/drawing_match.py``). This probe runs an
attention model on the fold's seeded test episodes (at the model's own size), keeps those
whose supports are of both kinds, and reports the mean weight of each kind and how often the
most weighted support shows the query's drawing, beside that kind's share of the supports
(what a choice blind to drawings would give)::

    python scripts/attention_by_drawing.py --checkpoint synthetic-imagenet-5shot-fold0 \\
        --fold 0 --episodes 300 --json attention-by-drawing.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from canetlib.data import make_dataset
from canetlib.evaluation import resolve_input_size
from canetlib.model import checkpoint
from canetlib.teaching.widgets import run_episode


def weights_by_drawing(weights: list[list[float]], same: list[list[bool]]) -> dict[str, Any]:
    """Over the episodes whose supports are of both kinds: mean weight of a support showing
    the query's drawing and of one that does not, how often the top weight falls on the first
    kind, and that kind's share of the supports."""
    mixed = [(w, s) for w, s in zip(weights, same) if any(s) and not all(s)]
    if not mixed:
        return {"mixed_episodes": 0}
    on = [x for w, s in mixed for x, y in zip(w, s) if y]
    off = [x for w, s in mixed for x, y in zip(w, s) if not y]
    top = [s[max(range(len(w)), key=w.__getitem__)] for w, s in mixed]
    return {"mixed_episodes": len(mixed),
            "mean_weight_same_drawing": round(sum(on) / len(on), 3),
            "mean_weight_other_drawings": round(sum(off) / len(off), 3),
            "top_weight_on_same_drawing_percent": round(100 * sum(top) / len(top), 1),
            "same_drawing_share_of_supports_percent": round(100 * len(on) / (len(on) + len(off)), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = checkpoint.load_model(args.checkpoint).eval()
    if model.fusion != "attention":
        p.error(f"{args.checkpoint} fuses supports by {model.fusion!r}, not attention")
    ds = make_dataset("synthetic", fold=args.fold, split="test", shots=args.shots,
                      episodes=args.episodes, seed=args.seed)
    size = resolve_input_size(ds, None, model)
    weights, same = [], []
    for i in range(len(ds)):
        spec = ds.spec(i)
        kinds = [ds.source.shares_drawing(spec.query_id, [s], spec.class_id)
                 for s in spec.support_ids]
        if any(kinds) and not all(kinds):  # only mixed episodes are run
            run = run_episode(model, ds[i], input_size=size)
            assert run.attention is not None
            weights.append(run.attention.tolist())
            same.append(kinds)
    summary = weights_by_drawing(weights, same)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "checkpoint": args.checkpoint, "fold": args.fold, "shots": args.shots,
            "episodes": args.episodes, "seed": args.seed, "input_size": list(size or []),
            **summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
