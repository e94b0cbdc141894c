"""The ``bench`` measurements: our evaluator against a reference-style re-run, and training.

:func:`run_benchmark` times, on one device and in each of its precision modes, one episode
of the evaluator (:func:`evaluator_path`: backbone once, IOM per refinement), the reference's
re-run of the whole network per IOM pass (:func:`rerun_path`), the backbone alone (the floor),
the stages, a batch of episodes and a training step; optionally the FLOPs per stage
(:func:`flop_counts`), the share of the device's convolution rate and a timed CLI evaluation.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from canetlib.evaluation.speed import cpu_bf16_supported, inference_setup
from canetlib.evaluation.throughput import conv_throughput, evaluation_timing
from canetlib.model import CANet
from canetlib.model.inference import iteration_maps
from canetlib.model.outputs import binary_prediction
from canetlib.model.runtime import amp_dtype, default_device

__all__ = ["BACKBONES", "EVAL_CHECKPOINT", "available_modes", "check_benchmark",
           "check_eval_checkpoint", "episode_batch", "evaluator_path", "flop_counts", "rerun_path",
           "run_benchmark", "train_step_fn"]

#: the backbones the benchmark builds
BACKBONES = ("resnet50", "vgg16", "resnet-tiny")
#: the checkpoint ``eval_episodes`` times by default (the book's)
EVAL_CHECKPOINT = "synthetic-imagenet-1shot-fold0"


def check_eval_checkpoint(checkpoint: str, name: str = "eval_checkpoint") -> None:
    """``checkpoint`` must be a readable CANet checkpoint trained on the synthetic world
    (what :func:`canetlib.evaluation.throughput.evaluation_timing` evaluates); the error names ``name``."""
    from canetlib.model.checkpoint import canet_config, load

    try:
        ckpt = load(checkpoint)
        canet_config(ckpt, checkpoint)
    except (OSError, ValueError) as err:
        raise ValueError(f"{name} {checkpoint}: {err}") from err
    dataset = (ckpt.get("train_config") or {}).get("dataset")
    if dataset != "synthetic":
        raise ValueError(f"{name} {checkpoint} was trained on {dataset!r}; the timed evaluation "
                         "runs the embedded synthetic world, so give a synthetic checkpoint "
                         f"(default {EVAL_CHECKPOINT})")


def check_benchmark(*, repeats: int | None, warmup: int, size: int, backbone: str,
                    iterations: int, batch: int, train_batch: int, width: int,
                    eval_episodes: int, eval_checkpoint: str | None,
                    flags: bool = False) -> None:
    """Every benchmark setting, before any work: one ``ValueError`` naming the argument (its
    command-line flag with ``flags=True``), its value and what is allowed."""
    from canetlib.model.inputs import check_at_least, check_iterations, check_size

    def named(key: str) -> str:
        return "--" + key.replace("_", "-") if flags else key

    if repeats is not None:
        check_at_least(repeats, 1, named("repeats"), "timed runs per measurement")
    check_at_least(warmup, 0, named("warmup"), "untimed runs first")
    check_size(size, size, named("size"))
    if backbone not in BACKBONES:
        raise ValueError(f"{named('backbone')} must be one of {', '.join(BACKBONES)}, "
                         f"got {backbone!r}")
    check_iterations(iterations, named("iterations"))
    check_at_least(batch, 1, named("batch"), "episodes per call")
    check_at_least(train_batch, 1, named("train_batch"), "episodes per training step")
    check_at_least(width, 1, named("width"), "head channels")
    check_at_least(eval_episodes, 0, named("eval_episodes"), "0 skips the timed evaluation")
    if eval_episodes:
        check_eval_checkpoint(eval_checkpoint or EVAL_CHECKPOINT, named("eval_checkpoint"))
    elif eval_checkpoint is not None and flags:
        raise ValueError(f"--eval-checkpoint {eval_checkpoint} is timed by --eval-episodes, "
                         "which is 0; give --eval-episodes N (or drop --eval-checkpoint)")


def episode_batch(batch: int, size: int, device: torch.device,
                  seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random 1-shot episodes: query, supports ``(B, 1, 3, S, S)``, masks, query masks."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, 3, size, size, generator=gen)
    supports = torch.randn(batch, 1, 3, size, size, generator=gen)
    masks = torch.zeros(batch, 1, size, size, dtype=torch.long)
    masks[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    target = torch.zeros(batch, size, size, dtype=torch.long)
    target[:, size // 3: 2 * size // 3, size // 5: 4 * size // 5] = 1
    return query.to(device), supports.to(device), masks.to(device), target.to(device)


def _masks(logits: Tensor, size: tuple[int, ...]) -> Tensor:
    return binary_prediction(logits.float(), size)


def evaluator_path(model: CANet, query: Tensor, supports: Tensor, masks: Tensor,
                   iterations: int) -> list[Tensor]:
    """Ours (the evaluator's :func:`~canetlib.model.inference.iteration_maps`): backbone
    once per image, IOM ``iterations + 1`` times; masks per iteration."""
    out = iteration_maps(model, query, supports, masks, iterations, logits=True)
    return [_masks(lg, tuple(query.shape[-2:])) for lg in out.maps]


def rerun_path(model: CANet, query: Tensor, supports: Tensor, masks: Tensor,
               iterations: int) -> list[Tensor]:
    """Reference style: the whole network (backbone included) once per IOM pass.

    Pass ``t`` feeds pass ``t - 1``'s softmax as history, so the masks equal
    :func:`evaluator_path`'s; query and support run through the backbone
    separately, as the reference's two branches did.
    """
    history: Tensor | None = None
    preds = []
    for _ in range(iterations + 1):
        qf = model.extract(query)
        sf = model.extract(supports.flatten(0, 1))
        feats = model.compare(qf, model.prototypes(sf, masks))
        logits = model.refine(feats, 0, history).logits[-1]
        history = torch.softmax(logits.float(), dim=1)
        preds.append(_masks(logits, tuple(query.shape[-2:])))
    return preds


def train_step_fn(model: CANet, batch: tuple[Tensor, Tensor, Tensor, Tensor],
                  device: torch.device, amp: bool) -> Callable[[], float]:
    """One training step (1 IOM pass, cross-entropy with 255 ignored, SGD) as a closure."""
    query, supports, masks, target = batch
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0025, momentum=0.9, weight_decay=5e-4)
    dtype = amp_dtype(device) if amp else None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def step() -> float:
        model.train()
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            out = model(query, supports, masks, iterations=0, check=False)
            logits = F.interpolate(out.final.float(), size=target.shape[-2:], mode="bilinear",
                                   align_corners=True)
            loss = F.cross_entropy(logits, target, ignore_index=255)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return float(loss.detach())

    return step


# -- timing ----------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_rounds(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int,
                 device: torch.device) -> dict[str, list[float]]:
    """Seconds of each function, measured round-robin (one call of each per round).

    Interleaving makes a load change on a shared machine hit every
    measurement alike, so the per-round ratios stay meaningful.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def _mode(model: CANet, device: torch.device, mode: str) -> Iterator[None]:
    """Inference mode in the evaluator's form for ``mode`` (:func:`available_modes`): eval,
    channels_last, BatchNorm folded, and the mode's precision; restored afterwards."""
    precision = {"fp32": "fp32", "amp_channels_last": "amp", "bf16_channels_last": "bf16"}[mode]
    with inference_setup(model, device, precision), torch.inference_mode():
        yield


def flop_counts(model: CANet, size: int, iterations: int,
                device: torch.device) -> dict[str, float]:
    """GFLOPs (multiply-add = 2) of each stage for one 1-shot episode, and their bounds."""
    from torch.utils.flop_counter import FlopCounterMode

    q, s, m, _ = episode_batch(1, size, device)

    def count(fn: Callable[[], Any]) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / 1e9

    model.eval()
    with torch.inference_mode():
        backbone = count(lambda: model.backbone(q))
        extract = count(lambda: model.extract(q))
        qf, sf = model.extract(q), model.extract(s[:, 0])
        protos = model.prototypes(sf, m)
        compare = count(lambda: model.compare(qf, protos))
        feats = model.compare(qf, protos)
        iom = count(lambda: model.refine(feats, 0))
        refine = count(lambda: model.refine(feats, iterations))
    passes = iterations + 1
    ours = 2 * extract + compare + refine
    rerun = passes * (2 * extract + compare + iom)
    later = (refine - iom) / iterations if iterations else iom
    return {"backbone_per_image": backbone, "encoder_per_image": extract - backbone,
            "comparison": compare, "iom_pass": iom, "iom_cached_pass": later,
            "evaluator_episode": ours,
            "rerun_episode": rerun, "ideal_speedup_vs_rerun": rerun / ours,
            "ideal_eval_vs_floor": ours / (2 * backbone)}


# -- the benchmark ------------------------------------------------------------------
def _measure(model: CANet, device: torch.device, mode: str, cfg: dict[str, Any],
             log: Callable[[str], None]) -> dict[str, Any]:
    size, it, reps, warm = cfg["size"], cfg["iterations"], cfg["repeats"], cfg["warmup"]
    q, s, m, _ = episode_batch(1, size, device)
    qb, sb, mb, _ = episode_batch(cfg["batch"], size, device, seed=1)
    both = torch.cat([q, s[:, 0]]).contiguous(memory_format=torch.channels_last)
    log("  inference (eval, rerun, floor, stages, batch) ...")
    with _mode(model, device, mode):
        qf, sf = model.extract(q), model.extract(s[:, 0])
        feats = model.compare(qf, model.prototypes(sf, m))
        t = _timed_rounds({
            "eval": lambda: evaluator_path(model, q, s, m, it),
            "rerun": lambda: rerun_path(model, q, s, m, it),
            "floor": lambda: model.backbone(both),
            "extract": lambda: model.extract(both),
            "compare": lambda: model.compare(qf, model.prototypes(sf, m)),
            "iom_pass": lambda: model.refine(feats, 0),
            "eval_batch": lambda: evaluator_path(model, qb, sb, mb, it),
        }, reps, warm, device)
    log("  training step ...")
    tb = episode_batch(cfg["train_batch"], size, device, seed=2)
    amp = mode == "amp_channels_last"  # training stays fp32 on the CPU
    cl = device.type == "cuda"  # the trainer's layout (TrainConfig.channels_last, CUDA only)
    model.use_channels_last(cl)
    try:
        t.update(_timed_rounds({"train_step": train_step_fn(model, tb, device, amp)},
                               reps, warm, device))
    finally:
        model.use_channels_last(False)
        model.eval()
    med = {name: statistics.median(v) for name, v in t.items()}
    speedups = [r / e for r, e in zip(t["rerun"], t["eval"])]
    floors = [e / f for e, f in zip(t["eval"], t["floor"])]
    return {
        "eval_episodes_per_s": 1 / med["eval"],
        "rerun_episodes_per_s": 1 / med["rerun"],
        "eval_speedup_vs_rerun": statistics.median(speedups),
        "eval_vs_floor": statistics.median(floors),
        "eval_ms": 1000 * med["eval"], "rerun_ms": 1000 * med["rerun"],
        "floor_ms": 1000 * med["floor"],
        "eval_batch_episodes_per_s": cfg["batch"] / med["eval_batch"],
        "train_steps_per_s": 1 / med["train_step"],
        "stages_ms": {"backbone_query_and_support": 1000 * med["floor"],
                      "encoder_query_and_support": 1000 * (med["extract"] - med["floor"]),
                      "comparison": 1000 * med["compare"], "iom_pass": 1000 * med["iom_pass"]},
        "per_round": {"eval_speedup_vs_rerun": speedups, "eval_vs_floor": floors},
        "timings_ms": {name: [1000 * x for x in v] for name, v in t.items()},
    }


def run_benchmark(device: str | torch.device | None = None, *, repeats: int | None = None,
                  warmup: int = 1, size: int = 321, backbone: str = "resnet50",
                  iterations: int = 4, batch: int = 8, train_batch: int = 4, width: int = 256,
                  backbone_widths: tuple[int, ...] | None = None, flops: bool = True,
                  eval_episodes: int = 0, eval_checkpoint: str = EVAL_CHECKPOINT,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement and return a JSON-ready dict.

    Top level: device, settings and the default mode's numbers (``eval_episodes_per_s``,
    ``rerun_episodes_per_s``, ``eval_speedup_vs_rerun``, ``eval_vs_floor``, ``stages_ms``,
    ``eval_batch_episodes_per_s``, ``train_steps_per_s``, ...); ``modes`` has every mode's.
    ``repeats`` defaults to 3 on CPU and 20 on CUDA. ``width`` and
    ``backbone_widths`` shrink the model for tests; the defaults are the paper's.
    ``eval_episodes`` > 0 also times the CLI's evaluation of ``eval_checkpoint``
    on that many episodes (:func:`canetlib.evaluation.throughput.evaluation_timing`), in
    each mode. Every setting is checked before any work (:func:`check_benchmark`).
    """
    check_benchmark(repeats=repeats, warmup=warmup, size=size, backbone=backbone,
                    iterations=iterations, batch=batch, train_batch=train_batch, width=width,
                    eval_episodes=eval_episodes, eval_checkpoint=eval_checkpoint)
    dev = default_device(device)
    reps = repeats if repeats is not None else (20 if dev.type == "cuda" else 3)
    say = log or (lambda _msg: None)
    torch.manual_seed(0)
    model = CANet(pretrained=False, backbone=backbone, width=width,
                  backbone_widths=backbone_widths, iterations=iterations).to(dev).eval()
    frozen, trainable = model.parameter_counts()
    cfg: dict[str, Any] = {"size": size, "iterations": iterations, "repeats": reps, "warmup": warmup,
           "batch": batch, "train_batch": train_batch}
    modes = available_modes(dev)
    results = {}
    for name in modes:
        say(f"{name}:")
        results[name] = _measure(model, dev, name, cfg, say)
    default = modes[0]
    settings = {**cfg, "backbone": backbone, "width": width, "shots": 1,
                "backbone_widths": list(backbone_widths) if backbone_widths else None,
                "parameters": {"frozen": frozen, "trainable": trainable},
                "default_mode": default}
    out = _header(dev, settings, results)
    if len(modes) > 1:
        base, fast = results[modes[0]], results[modes[1]]
        out[f"{modes[1]}_speedup_vs_{modes[0]}"] = {
            "eval": fast["eval_episodes_per_s"] / base["eval_episodes_per_s"],
            "eval_batch": fast["eval_batch_episodes_per_s"] / base["eval_batch_episodes_per_s"],
            "train": fast["train_steps_per_s"] / base["train_steps_per_s"]}
    if flops:
        say("flop counts and the convolution ceiling ...")
        out["flops_g"] = flop_counts(model, size, iterations, dev)
        out["conv_ceiling"] = _ceiling(out, results, dev)
    if eval_episodes:
        out["evaluation"] = {}
        for name in modes:
            say(f"evaluate --episodes {eval_episodes} ({name}) ...")
            out["evaluation"][name] = evaluation_timing(
                eval_checkpoint, episodes=eval_episodes, device=dev,
                bf16=name == "bf16_channels_last")
    return out


def _header(dev: torch.device, settings: dict[str, Any],
            results: dict[str, Any]) -> dict[str, Any]:
    """Device, versions, settings and the default mode's numbers (top level)."""
    return {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "settings": settings,
        **{k: v for k, v in results[settings["default_mode"]].items() if k != "timings_ms"},
        "modes": results,
    }


def available_modes(dev: torch.device) -> list[str]:
    """The precision modes measured on ``dev``; the first is the evaluator's default."""
    if dev.type == "cuda":
        return ["amp_channels_last", "fp32"]
    return ["fp32", "bf16_channels_last"] if cpu_bf16_supported() else ["fp32"]


def _ceiling(out: dict[str, Any], results: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    """Achieved GFLOP/s of our batched evaluator against the measured convolution rate."""
    episode = out["flops_g"]["evaluator_episode"]
    ceiling: dict[str, Any] = {}
    for name, res in results.items():
        peak = conv_throughput(dev, bf16=name == "bf16_channels_last")
        achieved = episode * res["eval_batch_episodes_per_s"]
        ceiling[name] = {"conv_gflops_per_s": peak, "evaluator_gflops_per_s": achieved,
                         "share": achieved / peak}
    return ceiling

