"""Probe CANet head recipes fast, on cached frozen-backbone features.

The backbone is frozen, so an experiment on the head need not run it every
step. This script renders ``--episodes`` training episodes of one fold once
(epoch 0's augmentation, kept for every epoch), caches their block features,
trains only the head (encoder, dense comparison, IOM; history memory with mask
dropout, section 4.2) on them, and scores it beside the training-free
prototype matcher on validation episodes of *held-out training classes*
(classes and images never trained on; see ``HeldOutSource(by="classes")``).
``--test`` adds the fold's test episodes as a diagnosis; the script never picks
anything on them.

Numbers approximate the real trainer's (one fixed augmentation per episode
rather than one per epoch): a recipe chosen here is then trained and scored with
``python -m canetlib train`` / ``evaluate``.

Example (one CPU thread, a few minutes)::

    python scripts/head_probe.py --fold 0 --episodes 3200 --epochs 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from canetlib.data import make_dataset, make_source
from canetlib.data.episodes import EpisodeDataset
from canetlib.evaluation import resize_episode
from canetlib.evaluation.metrics import FewShotMeter
from canetlib.model.baseline import PrototypeMatcher
from canetlib.model.modules import ResidualBlock, masked_average_pooling
from canetlib.training.configs import get_config
from canetlib.training.episodes import HeldOutSource, source_kwargs
from canetlib.training.history import HistoryMemory
from canetlib.training.recipe import pixel_loss
from canetlib.training.start import initial_model, kaiming_head


def cache_features(model: Any, dataset: EpisodeDataset, size: int | None,
                   batch: int = 16) -> dict[str, Any]:
    """Backbone features of every episode's query and first support (1-shot)."""
    blocks = model.blocks
    out: dict[str, Any] = {"q": {b: [] for b in blocks}, "s": {b: [] for b in blocks},
                           "qmask": [], "smask": [], "cls": []}
    items: list[dict[str, Any]] = []

    def flush() -> None:
        if not items:
            return
        q = torch.stack([it["query_image"] for it in items])
        s = torch.stack([it["support_images"][0] for it in items])
        with torch.inference_mode():
            fq, fs = model.backbone(q), model.backbone(s)
        for b in blocks:
            out["q"][b].append(fq[b].half())
            out["s"][b].append(fs[b].half())
        items.clear()

    for i in range(len(dataset)):
        it = dataset[i]
        if size is not None:  # test-style: resize to the model's input, keep the target
            it = dict(it)
            target = it["query_mask"]
            q, s, m = resize_episode(it["query_image"], it["support_images"],
                                     it["support_masks"], (size, size))
            it["query_image"], it["support_images"], it["support_masks"] = q, s, m
            it["query_mask"] = target
        out["qmask"].append(it["query_mask"].to(torch.uint8))
        out["smask"].append(it["support_masks"][0].to(torch.uint8))
        out["cls"].append(int(it["class_id"]))
        items.append(it)
        if len(items) == batch:
            flush()
    flush()
    for key in ("q", "s"):
        out[key] = {b: torch.cat(v) for b, v in out[key].items()}
    if size is None:
        out["qmask"] = torch.stack(out["qmask"])
        out["smask"] = torch.stack(out["smask"])
    return out


VARIANT = {"normalise": False, "prior": False, "relational": False, "self_prototype": False}


def self_similarity(query: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``(B, 1, h, w)``: each query location's cosine with the query's own prototype, the
    masked average of the query features under the foreground of ``probs`` ``(B, 2, h, w)``
    (0 everywhere for an empty mask)."""
    if probs.shape[-2:] != query.shape[-2:]:
        probs = F.interpolate(probs, size=query.shape[-2:], mode="bilinear", align_corners=True)
    proto = masked_average_pooling(query, probs[:, 1:2])
    return F.cosine_similarity(query, proto[:, :, None, None], dim=1, eps=1e-6)[:, None]


def refine_self(model: Any, query: torch.Tensor, x: torch.Tensor, iterations: int,
                history: torch.Tensor | None) -> list[torch.Tensor]:
    """IOM passes whose input adds :func:`self_similarity` of the previous mask (a departure:
    the query compared with its own prototype, besides the history)."""
    y = x.new_zeros(x.shape[0], 2, *x.shape[-2:]) if history is None else history
    if y.shape[-2:] != x.shape[-2:]:
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)
    outs = []
    for _ in range(iterations + 1):
        logits = model.iom(x, torch.cat([y, self_similarity(query, y)], 1))
        y = torch.softmax(logits.float(), dim=1)
        outs.append(logits)
    return outs


def cut_history(history: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Remembered masks made partial (a departure): in each row that holds a prediction, the
    foreground inside a random rectangle of 30-70 % of its box's height and width (a corner
    or edge of the box, drawn uniformly inside it) is moved to the background."""
    out = history.clone()
    for row in range(out.shape[0]):
        fg = out[row, 1]
        ys, xs = torch.nonzero(fg > 0.5, as_tuple=True)
        if ys.numel() == 0:
            continue
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        frac = 0.3 + 0.4 * torch.rand(2, generator=gen)
        h, w = max(1, round(float(frac[0]) * (y1 - y0))), max(1, round(float(frac[1]) * (x1 - x0)))
        top = y0 + int(torch.randint(0, y1 - y0 - h + 1, (1,), generator=gen))
        left = x0 + int(torch.randint(0, x1 - x0 - w + 1, (1,), generator=gen))
        cut = fg[top:top + h, left:left + w].clone()
        out[row, 1, top:top + h, left:left + w] = 0.0
        out[row, 0, top:top + h, left:left + w] += cut
    return out


def add_self_similarity_input(model: Any, kaiming: bool) -> None:
    """Give the IOM's history block one more input channel (:func:`self_similarity`)."""
    block = ResidualBlock(model.iom.history.body[1].in_channels + 1, model.config.width)
    for m in block.modules():
        if isinstance(m, torch.nn.Conv2d):
            if kaiming:
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                torch.nn.init.normal_(m.weight, 0.0, 0.01)
            torch.nn.init.zeros_(m.bias)
    model.iom.history = block


def _levels(model: Any, cache: dict[str, Any], key: str, idx: list[int]) -> list[torch.Tensor]:
    feats = [cache[key][b][idx].float() for b in model.blocks]
    return [F.normalize(f, dim=1) for f in feats] if VARIANT["normalise"] else feats


def head_logits(model: Any, cache: dict[str, Any], idx: list[int], iterations: int,
                history: torch.Tensor | None = None) -> list[torch.Tensor]:
    qraw, sraw = _levels(model, cache, "q", idx), _levels(model, cache, "s", idx)
    q, s = model.encoder(qraw), model.encoder(sraw)
    fg = torch.stack([(cache["smask"][i] == 1).float() for i in idx])[:, None]
    protos = model.prototypes(s, fg)
    if VARIANT["relational"]:  # only relations of q and p reach the head, never q alone
        from canetlib.model.canet import EpisodeFeatures
        p = protos[:, 0, :, None, None].expand_as(q)
        paired = torch.cat([q * p, (q - p).abs()], 1)
        feats = EpisodeFeatures(model.comparison(paired), 1, None)
        if VARIANT["self_prototype"]:
            return refine_self(model, q, feats.features, iterations, history)
        return model.refine(feats, iterations, history).logits
    if not VARIANT["prior"]:
        return model.refine(model.compare(q, protos), iterations, history).logits
    # the training-free matcher's similarity map as one extra comparison channel
    sims = []
    for qf, sf in zip(qraw, sraw):
        proto = model.prototypes(F.normalize(sf, dim=1), fg)[:, 0]
        sims.append(F.cosine_similarity(qf, proto[:, :, None, None], dim=1, eps=1e-6))
    sim = torch.stack(sims).mean(0)[:, None]
    from canetlib.model.canet import EpisodeFeatures
    paired = torch.cat([q, protos[:, 0, :, None, None].expand_as(q), sim], 1)
    feats = EpisodeFeatures(model.comparison(paired), 1, None)
    return model.refine(feats, iterations, history).logits


def score(logits_fn: Any, cache: dict[str, Any], classes: list[int]) -> float:
    meter = FewShotMeter(classes)
    n = len(cache["cls"])
    for start in range(0, n, 32):
        idx = list(range(start, min(n, start + 32)))
        logits = logits_fn(idx)
        for j, i in enumerate(idx):
            target = cache["qmask"][i].long()
            up = F.interpolate(logits[j:j + 1].float(), size=tuple(target.shape), mode="bilinear",
                               align_corners=True)
            meter.update(up.argmax(1), target[None], [cache["cls"][i]])
    return 100 * meter.miou()


def matcher_fn(matcher: PrototypeMatcher, cache: dict[str, Any]) -> Any:
    def fn(idx: list[int]) -> torch.Tensor:
        blocks = matcher.blocks
        q = torch.cat([F.normalize(cache["q"][b][idx].float(), dim=1) for b in blocks], 1)
        s = torch.cat([F.normalize(cache["s"][b][idx].float(), dim=1) for b in blocks], 1)
        fg = torch.stack([(cache["smask"][i] == 1).float() for i in idx])[:, None]
        feats = matcher.compare(q, matcher.prototypes(s, fg))
        return matcher.refine(feats, 0).logits[0]
    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="synthetic-imagenet-1shot")
    ap.add_argument("--set", action="append", default=[], help="TrainConfig key=value")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=3200)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--val-classes", type=int, default=3)
    ap.add_argument("--val-episodes", type=int, default=300)
    ap.add_argument("--test", action="store_true", help="also score the fold's test episodes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--normalise", action="store_true", help="L2-normalise each level first")
    ap.add_argument("--relational", action="store_true",
                    help="compare by [q * p, |q - p|] instead of [q, p] (not the paper's)")
    ap.add_argument("--prior", action="store_true",
                    help="feed the matcher's cosine map to the comparison (not the paper's)")
    ap.add_argument("--self-prototype", action="store_true",
                    help="with --relational: each IOM pass also gets the query's cosine with its "
                         "own prototype under the previous mask (not the paper's)")
    ap.add_argument("--cut-history", action="store_true",
                    help="train the IOM on remembered masks with a random part removed "
                         "(cut_history; not the paper's)")
    ap.add_argument("--cache-dir", help="keep the rendered features here between probes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_config(args.config, args.set, fold=args.fold)
    t0 = time.time()
    model = initial_model(cfg)
    VARIANT["normalise"], VARIANT["prior"] = args.normalise, args.prior
    VARIANT["relational"] = args.relational
    VARIANT["self_prototype"] = args.self_prototype
    if args.self_prototype:
        if not args.relational:
            ap.error("--self-prototype needs --relational")
        add_self_similarity_input(model, cfg.head_init == "kaiming")
    if args.prior:
        from canetlib.model.modules import conv_block
        model.comparison.compare = conv_block(2 * cfg.width + 1, cfg.width, 3, 2, cfg.dropout)
        if cfg.head_init == "kaiming":
            kaiming_head(model)
    source = make_source("synthetic", **source_kwargs(cfg))
    train_src = HeldOutSource(source, cfg.seed, 0.0, "train", by="classes",
                              classes=args.val_classes, fold=args.fold)
    val_src = HeldOutSource(source, cfg.seed, 0.0, "val", by="classes",
                            classes=args.val_classes, fold=args.fold)
    held = val_src.held_classes(args.fold)
    train_set = make_dataset("synthetic", fold=args.fold, split="train", shots=1,
                             episodes=args.episodes, seed=cfg.seed, source=train_src,
                             train_size=cfg.train_size)
    val_set = make_dataset("synthetic", fold=args.fold, split="test", shots=1,
                           episodes=args.val_episodes, seed=0, source=val_src)
    key = "-".join(str(v) for v in (args.fold, cfg.world_per_fold, cfg.world_base_classes,
                                     cfg.world_images, args.episodes, args.val_classes,
                                     args.val_episodes, cfg.train_size, cfg.backbone,
                                     "+".join(cfg.blocks), cfg.seed))
    store = Path(args.cache_dir) / f"probe-{key}.pt" if args.cache_dir else None
    if store is not None and store.is_file():
        tr, va, te = torch.load(store, weights_only=True)
    else:
        tr = cache_features(model, train_set, None)
        va = cache_features(model, val_set, cfg.train_size)
        te_set = make_dataset("synthetic", fold=args.fold, split="test", shots=1,
                              episodes=300, seed=0, source=source)
        te = cache_features(model, te_set, cfg.train_size)
        if store is not None:
            store.parent.mkdir(parents=True, exist_ok=True)
            torch.save((tr, va, te), store)
    if not args.test:
        te = None
    t_cache = time.time() - t0
    result: dict[str, Any] = {"config": cfg.name, "set": args.set, "held": held,
                              "normalise": args.normalise, "prior": args.prior,
                              "relational": args.relational,
                              "self_prototype": args.self_prototype,
                              "cut_history": args.cut_history,
                              "cache_s": round(t_cache)}
    # matcher: threshold on the training episodes' own classes (val/test never used)
    matcher = PrototypeMatcher.from_model(model)
    best = (-1.0, 0.5)
    fit_idx = list(range(min(600, args.episodes)))
    sub = {k: ({b: t[fit_idx] for b, t in v.items()} if isinstance(v, dict) else v[:len(fit_idx)])
           for k, v in tr.items()}
    sub["cls"] = tr["cls"][: len(fit_idx)]
    for t in np.arange(0.3, 0.75, 0.05):
        matcher.threshold = float(t)
        m = score(matcher_fn(matcher, sub), sub, sorted(set(sub["cls"])))
        best = max(best, (m, float(t)))
    matcher.threshold = best[1]
    result["matcher_threshold"] = round(best[1], 2)
    result["matcher_val"] = round(score(matcher_fn(matcher, va), va, held), 1)
    if te is not None:
        result["matcher_test"] = round(score(matcher_fn(matcher, te), te,
                                             source.test_classes(args.fold)), 1)
    # head training on the cache
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, bs = args.episodes, cfg.batch_size
    steps_per_epoch = n // bs
    total = steps_per_epoch * args.epochs
    memory = HistoryMemory(n)
    cut_gen = torch.Generator().manual_seed(cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    curve = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=gen).tolist()
        for k in range(steps_per_epoch):
            idx = order[k * bs:(k + 1) * bs]
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (1 - step / total) ** cfg.poly_power
            history = memory.inputs(idx, cfg.mask_dropout, cfg.seed, epoch, torch.device("cpu"))
            if args.cut_history and history is not None:
                history = cut_history(history, cut_gen)
            logits = head_logits(model, tr, idx, 0, history)[-1]
            loss = pixel_loss(logits, tr["qmask"][idx].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            memory.update(torch.tensor(idx), torch.softmax(logits.detach(), 1)[:, 1])
            step += 1
        model.eval()
        with torch.no_grad():
            row = {"epoch": epoch + 1, "loss": round(float(loss), 3)}
            for name, cache, classes in (("val", va, held), ("test", te, None)):
                if cache is None:
                    continue
                classes = classes or source.test_classes(args.fold)
                outs = {}
                for it in (0, cfg.iterations):
                    outs[it] = round(score(
                        lambda idx, c=cache, t=it: head_logits(model, c, idx, t)[-1], cache,
                        classes), 1)
                row[f"{name}_init"], row[name] = outs[0], outs[cfg.iterations]
        curve.append(row)
        print(json.dumps(row), flush=True)
    result["curve"] = curve
    result["seconds"] = round(time.time() - t0)
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
