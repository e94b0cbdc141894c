"""How much does the IOM listen to its history input? One pass from chosen starting masks.

CANet's iterative optimization module (paper section 4.2) refines a prediction by feeding
its own previous output back as an input. If a trained model's IOM barely uses that input,
refining cannot add much. This probe runs *one* IOM pass on the fold's test episodes with
four starting masks and reports the mIoU of each:

* ``empty``: what CANet-Init sees (no prediction yet);
* ``own``: the model's own CANet-Init prediction (what iteration 1 sees);
* ``truth``: the ground truth, downsampled to the feature grid (the best possible history);
* ``inverted``: the ground truth with foreground and background swapped (the worst).

If ``truth`` and ``inverted`` land close to ``empty``, the module ignores its history.

    python scripts/iom_history_probe.py --checkpoint synthetic-imagenet-1shot-fold0 --fold 0 \\
        --episodes 500 --json canetlib/teaching/results/imagenet-backbone/fold0/iom-history-probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.nn import functional as F

from canetlib.data import make_dataset
from canetlib.evaluation import resize_episode, resolve_input_size
from canetlib.evaluation.metrics import FewShotMeter
from canetlib.model import checkpoint

STARTS = ("empty", "own", "truth", "inverted")


def history_of(start: str, truth: torch.Tensor, init_probs: torch.Tensor) -> torch.Tensor | None:
    """The ``(1, 2, h, w)`` background/foreground history for one starting mask."""
    if start == "empty":
        return None
    if start == "own":
        return init_probs
    fg = (truth == 1).float()
    if start == "inverted":
        fg = 1.0 - fg
    return torch.stack([1.0 - fg, fg])[None]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = checkpoint.load_model(args.checkpoint).eval()
    ds = make_dataset("synthetic", fold=args.fold, split="test", shots=1, episodes=args.episodes,
                      seed=args.seed)
    size = resolve_input_size(ds, None, model)
    meters = {s: FewShotMeter(ds.classes) for s in STARTS}
    with torch.inference_mode():
        for i in range(len(ds)):
            item = ds[i]
            q, s, m = resize_episode(item["query_image"], item["support_images"],
                                     item["support_masks"], size)
            feats = model.encode(q[None], s[None], m[None])
            grid = feats.features.shape[-2:]
            truth = F.interpolate(item["query_mask"][None, None].float(), size=tuple(grid),
                                  mode="nearest")[0, 0]
            init = torch.softmax(model.refine(feats, 0).logits[0].float(), dim=1)
            target = item["query_mask"][None]
            for start in STARTS:
                logits = model.refine(feats, 0, history=history_of(start, truth, init)).logits[0]
                up = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear",
                                   align_corners=True)
                meters[start].update(up.argmax(1), target, [int(item["class_id"])])
    result = {"checkpoint": args.checkpoint, "fold": args.fold, "episodes": args.episodes,
              "seed": args.seed, "input_size": list(size),
              "miou_after_one_pass": {s: round(100 * meters[s].miou(), 2) for s in STARTS}}
    for start, value in result["miou_after_one_pass"].items():
        print(f"one IOM pass from the {start:<9} mask: mIoU {value:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
