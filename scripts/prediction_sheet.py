"""Look at the predictions: CANet beside the training-free matcher on seeded test episodes.

One row per episode: the support (its mask in green), the query with the true mask,
CANet's final mask and the prototype matcher's mask (red), each titled with its IoU.

    python scripts/prediction_sheet.py --checkpoint synthetic-imagenet-1shot-fold0 \\
        --fold 0 --episodes 10 --out data/results/imagenet-backbone/fold0/predictions.png
"""

from __future__ import annotations

import argparse

import matplotlib
import torch
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from canetlib.data import make_dataset
from canetlib.evaluation import fit_prototype_baseline
from canetlib.model import checkpoint
from canetlib.teaching import visual
from canetlib.teaching.widgets import run_episode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-size", type=int, default=None,
                    help="model input side (default: the checkpoint's own)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = checkpoint.load_model(args.checkpoint)
    size = args.input_size or model.input_size
    matcher, _ = fit_prototype_baseline(model, "synthetic", fold=args.fold)
    ds = make_dataset("synthetic", fold=args.fold, split="test", shots=1,
                      episodes=args.episodes, seed=args.seed)
    fig, axes = plt.subplots(args.episodes, 4, figsize=(8, 2 * args.episodes))
    for i in range(args.episodes):
        item = ds[i]
        ours = run_episode(model, item, input_size=size)
        theirs = run_episode(matcher, item, input_size=size, iterations=0)
        name = ds.source.class_names[item["class_id"] - 1]
        panels = [
            (visual.overlay(item["support_images"][0], item["support_masks"][0], color=(0, 255, 0)),
             f"support: {name}"),
            (visual.overlay(item["query_image"], item["query_mask"], color=(0, 255, 0)),
             "query, true mask"),
            (visual.overlay(item["query_image"], ours.masks[-1]), f"CANet IoU {ours.ious[-1]:.0f}"),
            (visual.overlay(item["query_image"], theirs.masks[-1]),
             f"matcher IoU {theirs.ious[-1]:.0f}"),
        ]
        for ax, (image, title) in zip(axes[i], panels):
            ax.imshow(image)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        print(f"episode {i} {name}: CANet {ours.ious[-1]:.1f}, matcher {theirs.ious[-1]:.1f}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=60)
    Image.open(args.out).convert("RGB").quantize(128).save(args.out, optimize=True)  # small file


if __name__ == "__main__":
    main()
