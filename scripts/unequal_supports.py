"""Does the k-shot attention earn its place when the supports are not equally good?

Section 4.3 of the paper motivates the attention branch by supports that differ in how
useful they are. On the benchmark's test episodes the five supports are images of the
same class with correct masks, and the learned weights stay close to 1/k. This script
spoils supports on purpose and compares, on the *same* 5-shot checkpoint and the same
seeded test episodes, the attention fusion with Feature-Avg (the plain mean of the k
comparison features, Table 5):

* ``clean``: the benchmark's episodes;
* ``wrong-N``: the last ``N`` supports are replaced by images of *another* test class
  with that class's mask (an annotator's mistake: a confident mask of the wrong thing),
  drawn by a seeded generator per episode.

A fusion that can tell a useful support from a useless one should lose less as ``N``
grows. The attention weights given to the wrong supports are reported too (1/k = 0.2).
Diagnosis only: nothing here chooses a model or a setting.

    python scripts/unequal_supports.py --checkpoint synthetic-imagenet-5shot-fold0 --fold 0 \\
        --episodes 1000 --json data/results/imagenet-backbone/fold0/5shot-unequal-supports.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canetlib.data import make_dataset
from canetlib.data.episodes import normalise_image, target_mask
from canetlib.evaluation import evaluate
from canetlib.model import checkpoint


class WrongSupports(torch.utils.data.Dataset):
    """Test episodes whose last ``n`` supports show another test class (seeded)."""

    def __init__(self, episodes: Any, n: int, seed: int) -> None:
        self.episodes, self.n, self.seed = episodes, n, seed
        self.source = episodes.source

    def __len__(self) -> int:
        return len(self.episodes)

    def __getattr__(self, name: str) -> Any:  # classes, source name, ... of the episodes
        return getattr(self.__dict__["episodes"], name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.episodes[index])
        if self.n == 0:
            return item
        rng = np.random.default_rng([self.seed, index, 11])
        others = [c for c in self.episodes.classes if c != item["class_id"]]
        images = list(item["support_images"])
        masks = list(item["support_masks"])
        k = len(images)
        for slot in range(k - self.n, k):
            c = others[int(rng.integers(len(others)))]
            pool = self.episodes.class_images[c]
            image_id = pool[int(rng.integers(len(pool)))]
            images[slot] = normalise_image(self.source.load_image(image_id))
            masks[slot] = target_mask(self.source.load_mask(image_id), c)
        item["support_images"] = _stack(images)
        item["support_masks"] = _stack(masks)
        return item


def _stack(tensors: list[Any]) -> Any:
    ts = [torch.as_tensor(t) for t in tensors]
    return torch.stack(ts) if all(t.shape == ts[0].shape for t in ts) else ts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wrong", default="0,1,2,3", help="numbers of wrong supports to test")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    episodes = make_dataset("synthetic", split="test", fold=args.fold, shots=5, episodes=args.episodes,
                             seed=args.seed)
    results: dict[str, dict[str, float]] = {}
    for n in (int(t) for t in args.wrong.split(",")):
        data = WrongSupports(episodes, n, args.seed)
        row: dict[str, float] = {}
        for fusion in ("attention", "feature-avg"):
            model = checkpoint.load_model(args.checkpoint, fusion=fusion).eval()
            weights: list[torch.Tensor] = []
            if fusion == "attention":  # record the (B, k) softmax weights of every batch
                plain = model.attention.weights

                def recording(paired: torch.Tensor, shots: int, plain: Any = plain,
                              weights: list[torch.Tensor] = weights) -> torch.Tensor:
                    w = plain(paired, shots)
                    weights.append(w.detach().float().cpu())
                    return w

                model.attention.weights = recording  # type: ignore[method-assign]
            res = evaluate(model, data, iterations=4)  # at the checkpoint's input size
            row[fusion] = round(float(res["miou"]), 2)
            if weights:
                w = torch.cat([x.reshape(-1, 5) for x in weights])
                row["attention_max_weight"] = round(float(w.max(dim=1).values.mean()), 3)
                if n:
                    row["attention_weight_of_wrong"] = round(float(w[:, 5 - n:].mean()), 3)
        results[f"wrong-{n}"] = row
        print(f"wrong supports {n}: {row}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "checkpoint": args.checkpoint, "fold": args.fold, "episodes": args.episodes,
            "seed": args.seed, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
