"""Which part of the DenseCRF costs CANet-Init its points? A diagnosis, not a tuning.

Table 4's "CANet-Init + DenseCRF" row runs :class:`canetlib.evaluation.crf.DenseCRF` with settings fixed
in advance. On the embedded world it lowers CANet-Init's score by about 13 points. This
script scores CANet-Init alone and with the CRF under a few settings on the same seeded test
episodes, to see which kernel does the damage. Because it looks at test episodes, nothing
here may be used to *choose* CRF settings for the benchmark (do that on validation episodes
of training classes, as the book's chapter 9 exercise says).

    python scripts/crf_probe.py --episodes 300 --json data/results/imagenet-backbone/fold0/crf-probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from canetlib.data import make_dataset
from canetlib.evaluation import evaluate
from canetlib.evaluation.crf import DenseCRF
from canetlib.model import checkpoint

VARIANTS = {
    "no CRF": None,
    "default (appearance + smoothness)": {},
    "smoothness kernel only": {"appearance_weight": 0.0},
    "appearance kernel 20 px wide": {"appearance_xy": 20.0},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="synthetic-imagenet-1shot-fold0")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = checkpoint.load_model(args.checkpoint)
    ds = make_dataset("synthetic", split="test", fold=args.fold, shots=1, episodes=args.episodes,
                       seed=args.seed)
    out = {}
    for name, kw in VARIANTS.items():
        post = None if kw is None else DenseCRF(**kw)
        r = evaluate(model, ds, iterations=0, postprocess=post, device="cpu")
        out[name] = round(r["miou"], 2)
        print(f"CANet-Init, {name:<36} mIoU {r['miou']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "checkpoint": args.checkpoint, "fold": args.fold, "episodes": args.episodes,
            "seed": args.seed, "miou": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
