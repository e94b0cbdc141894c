"""What this machine's convolutions can do, and where a real evaluation's time goes.

Two measurements :mod:`canetlib.evaluation.bench` reports beside its episode timings:

* :func:`conv_throughput`: GFLOP/s of one dense 3x3 convolution of the IOM's
  shape (256 channels on the 41 x 41 grid of a 321 px image, a batch of 8) in
  its fastest layout (channels_last). It is the honest ceiling for the
  evaluator: the head is made of such convolutions, so "achieved GFLOP/s / this"
  says how close the implementation gets to what the hardware does.
* :func:`evaluation_timing`: the CLI's evaluation of a shipped checkpoint
  (``evaluate --episodes N`` on the embedded world) with its wall time split
  into data, backbone, head and metrics (:class:`~canetlib.evaluation.speed.StageTimes`),
  so that "the backbone passes alone" and "the whole evaluation" come from one run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.nn import functional as F

__all__ = ["conv_throughput", "evaluation_timing"]


def conv_throughput(device: torch.device | str = "cpu", *, bf16: bool = False,
                    channels: int = 256, grid: int = 41, batch: int = 8,
                    repeats: int = 5) -> float:
    """GFLOP/s (multiply-add = 2) of a 3x3 ``channels -> channels`` convolution on a
    ``batch x grid x grid`` input, channels_last, median of ``repeats`` after a warm-up."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, grid, grid, generator=gen).to(dev)
    w = torch.randn(channels, channels, 3, 3, generator=gen).to(dev) * 0.01
    x = x.contiguous(memory_format=torch.channels_last)
    w = w.contiguous(memory_format=torch.channels_last)
    if bf16:
        x, w = x.bfloat16(), w.bfloat16()
    flops = 2.0 * batch * channels * channels * 9 * grid * grid
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            F.conv2d(x, w, padding=1)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i:  # the first call is the warm-up
                times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


def evaluation_timing(checkpoint: str = "synthetic-imagenet-1shot-fold0", *,
                      episodes: int = 1000, seed: int = 0, bf16: bool = False,
                      device: str | torch.device = "cpu") -> dict[str, Any]:
    """Evaluate a shipped checkpoint as ``evaluate --episodes N`` does; time every stage.

    Returns the mIoU per iteration, ``seconds`` (data, backbone, head,
    metrics, total), ``episodes_per_second`` and ``vs_backbone`` = total /
    backbone seconds (the backbone runs once per distinct image: the feature
    cache serves repeats). Data set-up (drawing the episodes' specification)
    happens before the clock starts, as in the CLI.
    """
    from canetlib.data import make_dataset
    from canetlib.evaluation.loop import evaluate
    from canetlib.model.checkpoint import load, load_model

    trained = load(checkpoint).get("train_config") or {}
    if trained.get("dataset") != "synthetic":
        raise ValueError(f"{checkpoint}: evaluation_timing runs the embedded world; this "
                         f"checkpoint was trained on {trained.get('dataset')!r}")
    model = load_model(checkpoint)
    shots = int(trained.get("shots", 1))
    dataset = make_dataset("synthetic", fold=int(trained.get("fold", 0)), split="test",
                           shots=shots, episodes=episodes, seed=seed)
    result = evaluate(model, dataset, iterations=4, device=device, bf16=bf16)
    timings = dict(result.timings or {})
    return {
        "checkpoint": checkpoint, "episodes": episodes, "seed": seed, "shots": shots,
        "precision": result.settings["precision"], "threads": torch.get_num_threads(),
        "miou_per_iteration": result.miou_per_iteration,
        "seconds": timings, "episodes_per_second": result.episodes_per_second,
        "vs_backbone": timings["total"] / timings["backbone"] if timings.get("backbone")
        else None,
    }
