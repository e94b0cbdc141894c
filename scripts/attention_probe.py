"""Why do the k-shot attention weights stay near 1/k? A per-episode diagnosis.

For each seeded k-shot test episode of the embedded world, on one k-shot checkpoint with the
attention fusion (eq. 2), this records:

* the attention logits ``lambda_i`` before the softmax (a hook on the branch's output), their
  spread over the k supports (sample std and max - min) and the largest softmax weight;
* how unequal the supports really are: the query's foreground IoU when the model sees each
  support *alone* (k runs of the same model with one support), their spread, and whether the
  logits rank the supports as their own IoUs do (Spearman correlation per episode);
* what weighting could win at most here: the IoU of the best single support ("oracle pick")
  against the attention fusion and Feature-Avg on the full k-shot episode;
* whether the branch's input holds what a ranking needs: a training-free score per support,
  the mean of the top 10% cosine similarities between the query's features and that
  support's prototype (the ``q * p`` half of the relational pairing summed over channels),
  its rank correlation with the supports' own IoUs, and the IoU of the support it picks;
* the supports' object areas (fraction of foreground pixels of each support mask) and their
  rank correlation with the supports' own IoUs, a property neither the branch nor the score
  above is told directly;
* with the last support replaced by an image of another test class with that class's mask
  (seeded per episode), the logit of that wrong support minus the mean logit of the others,
  and its weight.

Per-episode foreground IoU (not the class-pooled mIoU of the benchmark): a diagnosis, nothing
here chooses a model or a setting. One JSON with every episode's numbers and a summary::

    python scripts/attention_probe.py --checkpoint synthetic-imagenet-5shot-fold0 --fold 0 \\
        --episodes 200 --json data/results/imagenet-backbone/attention/fold0.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canetlib.data import make_dataset
from canetlib.data.episodes import normalise_image, target_mask
from canetlib.evaluation import resize_episode, resolve_input_size
from canetlib.model import CANet, checkpoint
from canetlib.teaching.widgets.runs import run_episode


def _ranks(values: list[float]) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    arr = np.asarray(values)
    for v in set(values):
        same = arr == v
        ranks[same] = ranks[same].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation; ``None`` when either side has no spread."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


class LogitRecorder:
    """Keeps the attention branch's pre-softmax output ``(B*k,)`` of the last forward pass."""

    def __init__(self, model: CANet) -> None:
        assert model.attention is not None, "the checkpoint has no attention branch"
        self.last: torch.Tensor | None = None
        model.attention.branch.register_forward_hook(self._keep)

    def _keep(self, module: Any, inputs: Any, output: torch.Tensor) -> None:
        self.last = output.detach().float().flatten().cpu()


def _single(item: dict[str, Any], i: int) -> dict[str, Any]:
    """The episode with support ``i`` only."""
    one = dict(item)
    one["support_images"] = item["support_images"][i:i + 1]
    one["support_masks"] = item["support_masks"][i:i + 1]
    return one


def _with_wrong_last(item: dict[str, Any], episodes: Any, seed: int, index: int
                     ) -> dict[str, Any]:
    """The episode with its last support replaced by another test class (seeded).

    Supports are kept as a list: test episodes hold images at their own sizes."""
    rng = np.random.default_rng([seed, index, 11])
    others = [c for c in episodes.classes if c != item["class_id"]]
    c = others[int(rng.integers(len(others)))]
    pool = episodes.class_images[c]
    image_id = pool[int(rng.integers(len(pool)))]
    images = [torch.as_tensor(t) for t in item["support_images"]]
    masks = [torch.as_tensor(t) for t in item["support_masks"]]
    images[-1] = torch.as_tensor(normalise_image(episodes.source.load_image(image_id)))
    masks[-1] = torch.as_tensor(target_mask(episodes.source.load_mask(image_id), c))
    wrong = dict(item)
    wrong["support_images"], wrong["support_masks"] = images, masks
    return wrong


@torch.inference_mode()
def similarity_scores(model: CANet, item: dict[str, Any], size: Any) -> list[float]:
    """Per support: mean of the top 10% cosine similarities of query features to its prototype."""
    query, supports, masks = resize_episode(item["query_image"], item["support_images"],
                                            item["support_masks"], size)
    q = torch.nn.functional.normalize(model.extract(query[None]), dim=1)  # (1, C, h, w)
    protos = model.prototypes(model.extract(supports), masks[None])[0]  # (k, C)
    p = torch.nn.functional.normalize(protos, dim=1)
    sims = torch.einsum("chw,kc->khw", q[0], p).flatten(1)  # (k, h*w)
    top = max(1, sims.shape[1] // 10)
    return sims.topk(top, dim=1).values.mean(dim=1).tolist()


def support_areas(item: dict[str, Any]) -> list[float]:
    """Fraction of each support mask's pixels that are the object."""
    return [float((torch.as_tensor(m) == 1).float().mean()) for m in item["support_masks"]]


def probe_episode(model: CANet, rec: LogitRecorder, item: dict[str, Any], size: Any,
                  wrong: dict[str, Any]) -> dict[str, Any]:
    """Every number of one episode (see the module docstring)."""
    k = len(item["support_images"])
    model.use_fusion("attention")
    att = run_episode(model, item, input_size=size)
    assert rec.last is not None and att.ious is not None and att.attention is not None
    logits = rec.last[-k:].tolist()
    model.use_fusion("feature-avg")
    avg = run_episode(model, item, input_size=size)
    model.use_fusion("attention")
    single = [run_episode(model, _single(item, i), input_size=size).ious for i in range(k)]
    single_final = [float(s[-1]) for s in single if s is not None]
    sims = similarity_scores(model, item, size)
    areas = support_areas(item)
    row: dict[str, Any] = {
        "logits": [round(v, 4) for v in logits],
        "weights": [round(float(w), 4) for w in att.attention],
        "iou_attention": round(att.ious[-1], 2),
        "iou_feature_avg": round(float(avg.ious[-1]), 2) if avg.ious else None,
        "iou_single": [round(v, 2) for v in single_final],
        "spearman_logit_vs_single_iou": spearman(logits, single_final),
        "similarity": [round(v, 4) for v in sims],
        "spearman_similarity_vs_single_iou": spearman(sims, single_final),
        "area": [round(v, 4) for v in areas],
        "spearman_area_vs_single_iou": spearman(areas, single_final),
    }
    if wrong:
        run_episode(model, wrong, input_size=size)
        assert rec.last is not None
        wl = rec.last[-k:].tolist()
        row["wrong_logit_minus_others"] = round(wl[-1] - statistics.mean(wl[:-1]), 4)
        row["wrong_weight"] = round(float(torch.softmax(torch.tensor(wl), 0)[-1]), 4)
    return row


def _mean(values: list[float]) -> float:
    return round(statistics.mean(values), 3) if values else float("nan")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Episode means of the quantities the diagnosis reads."""
    corr = [r["spearman_logit_vs_single_iou"] for r in rows
            if r["spearman_logit_vs_single_iou"] is not None]
    wrong = [r for r in rows if "wrong_weight" in r]
    area_corr = [r["spearman_area_vs_single_iou"] for r in rows
                 if r.get("spearman_area_vs_single_iou") is not None]
    sim_corr = [r["spearman_similarity_vs_single_iou"] for r in rows
                if r["spearman_similarity_vs_single_iou"] is not None]
    return {
        "episodes": len(rows),
        "logit_std_over_supports": _mean([statistics.stdev(r["logits"]) for r in rows]),
        "logit_range_over_supports": _mean([max(r["logits"]) - min(r["logits"]) for r in rows]),
        "max_weight": _mean([max(r["weights"]) for r in rows]),
        "single_iou_std_over_supports": _mean([statistics.stdev(r["iou_single"]) for r in rows]),
        "single_iou_range_over_supports": _mean([max(r["iou_single"]) - min(r["iou_single"])
                                                 for r in rows]),
        "spearman_logit_vs_single_iou": _mean(corr),
        "iou_attention": _mean([r["iou_attention"] for r in rows]),
        "iou_feature_avg": _mean([r["iou_feature_avg"] for r in rows]),
        "iou_mean_single": _mean([statistics.mean(r["iou_single"]) for r in rows]),
        "iou_oracle_single": _mean([max(r["iou_single"]) for r in rows]),
        "iou_single_picked_by_logit": _mean([r["iou_single"][int(np.argmax(r["logits"]))]
                                             for r in rows]),
        "spearman_similarity_vs_single_iou": _mean(sim_corr),
        "iou_single_picked_by_similarity": _mean([r["iou_single"][int(np.argmax(r["similarity"]))]
                                                  for r in rows]),
        "spearman_area_vs_single_iou": _mean(area_corr),
        "iou_single_picked_by_area": _mean([r["iou_single"][int(np.argmax(r["area"]))]
                                            for r in rows if "area" in r]),
        "wrong_logit_minus_others": _mean([r["wrong_logit_minus_others"] for r in wrong]),
        "wrong_weight": _mean([r["wrong_weight"] for r in wrong]),
        "wrong_episodes": len(wrong),
    }


def add_areas(path: Path) -> int:
    """Add the support areas to a probe JSON written before they were recorded."""
    data = json.loads(path.read_text())
    episodes = make_dataset("synthetic", split="test", fold=data["fold"], shots=data["shots"],
                             episodes=data["episodes"], seed=data["seed"])
    for index, row in enumerate(data["per_episode"]):
        areas = support_areas(episodes[index])
        row["area"] = [round(v, 4) for v in areas]
        row["spearman_area_vs_single_iou"] = spearman(areas, row["iou_single"])
    data["summary"] = summarise(data["per_episode"])
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(data["summary"], indent=1))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="a k-shot checkpoint with attention")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--add-areas", action="store_true",
                   help="only add the support areas to an existing --json (no model runs)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.add_areas:
        return add_areas(Path(args.json))
    if not args.checkpoint:
        p.error("--checkpoint is required")
    model = checkpoint.load_model(args.checkpoint, fusion="attention").eval()
    rec = LogitRecorder(model)
    episodes = make_dataset("synthetic", split="test", fold=args.fold, shots=args.shots,
                             episodes=args.episodes, seed=args.seed)
    size = resolve_input_size(episodes, None, model)
    rows = []
    for index in range(len(episodes)):
        item = episodes[index]
        wrong = _with_wrong_last(item, episodes, args.seed, index)
        rows.append(probe_episode(model, rec, item, size, wrong))
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "checkpoint": args.checkpoint, "fold": args.fold, "shots": args.shots,
            "episodes": args.episodes, "seed": args.seed, "input_size": list(size or []),
            "summary": summary, "per_episode": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
