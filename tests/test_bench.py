"""The benchmark: JSON keys, positive numbers, and a fair reference-style comparison."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from helpers import tiny_model

from canetlib.cli import main
from canetlib.evaluation.bench import (
    available_modes,
    episode_batch,
    evaluator_path,
    rerun_path,
    run_benchmark,
)
from canetlib.evaluation.throughput import conv_throughput, evaluation_timing
from canetlib.model.checkpoint import load

TINY: dict[str, Any] = {"size": 48, "backbone": "resnet-tiny", "width": 16,
                        "backbone_widths": (8, 8, 16, 16), "batch": 2, "train_batch": 2,
                        "repeats": 1, "warmup": 0}


def test_rerun_path_computes_the_same_masks() -> None:
    model = tiny_model()
    q, s, m, _ = episode_batch(2, 48, torch.device("cpu"))
    with torch.inference_mode():
        ours = evaluator_path(model, q, s, m, 3)
        rerun = rerun_path(model, q, s, m, 3)
    assert len(ours) == len(rerun) == 4
    assert all(torch.equal(a, b) for a, b in zip(ours, rerun))


def test_benchmark_reports_positive_numbers() -> None:
    r = run_benchmark("cpu", **TINY)
    for key in ("eval_episodes_per_s", "rerun_episodes_per_s", "eval_speedup_vs_rerun",
                "eval_vs_floor", "eval_batch_episodes_per_s", "train_steps_per_s", "floor_ms"):
        assert r[key] > 0, key
    assert list(r["modes"]) == available_modes(torch.device("cpu"))
    assert r["settings"]["default_mode"] == "fp32"
    assert r["settings"]["size"] == 48 and r["settings"]["iterations"] == 4
    flops = r["flops_g"]
    assert flops["rerun_episode"] > flops["evaluator_episode"] > 0
    assert 1 < flops["ideal_speedup_vs_rerun"] < 5
    ceiling = r["conv_ceiling"]["fp32"]
    assert ceiling["conv_gflops_per_s"] > 0
    assert ceiling["share"] == pytest.approx(
        flops["evaluator_episode"] * r["eval_batch_episodes_per_s"] / ceiling["conv_gflops_per_s"])
    assert "targets" not in r and "meets_targets" not in r


def test_conv_throughput_counts_flops() -> None:
    rate = conv_throughput("cpu", channels=16, grid=9, batch=2, repeats=1)
    assert 0.01 < rate < 1e5  # GFLOP/s


def test_evaluation_timing_splits_the_run(tmp_path: Path) -> None:
    t = evaluation_timing("synthetic-imagenet-1shot-fold0", episodes=6)
    sec = t["seconds"]
    assert sec["backbone"] > 0 and sec["head"] > 0 and sec["metrics"] > 0 and sec["data"] > 0
    assert sec["total"] >= sec["backbone"] + sec["head"] + sec["metrics"]
    assert t["vs_backbone"] == pytest.approx(sec["total"] / sec["backbone"], rel=1e-3)
    assert t["precision"] == "fp32" and len(t["miou_per_iteration"]) == 5
    ckpt = load("synthetic-imagenet-1shot-fold0")
    ckpt["train_config"]["dataset"] = "pascal"
    torch.save(ckpt, tmp_path / "pascal.pt")
    with pytest.raises(ValueError, match="embedded world"):
        evaluation_timing(str(tmp_path / "pascal.pt"), episodes=1)


def test_bench_command_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    rc = main(["bench", "--json", str(out), "--device", "cpu", "--size", "40", "--backbone",
               "resnet-tiny", "--width", "16", "--repeats", "1", "--warmup", "0", "--batch", "2",
               "--train-batch", "2", "--no-flops", "--iterations", "1", "--eval-episodes", "4",
               "--threads", "1"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["eval_speedup_vs_rerun"] > 0 and data["train_steps_per_s"] > 0
    assert "flops_g" not in data and "conv_ceiling" not in data
    timed = data["evaluation"]["fp32"]
    assert timed["episodes"] == 4 and timed["threads"] == 1 and timed["seconds"]["backbone"] > 0
    printed = capsys.readouterr().out
    assert "eval_speedup_vs_rerun" in printed and "evaluate --episodes 4" in printed
    assert "target" not in printed


def test_bench_command_without_the_timed_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    rc = main(["bench", "--json", str(out), "--device", "cpu", "--size", "40", "--backbone",
               "resnet-tiny", "--width", "16", "--repeats", "1", "--warmup", "0", "--batch", "1",
               "--train-batch", "1", "--no-flops", "--iterations", "0", "--eval-episodes", "0",
               "--threads", "1"])
    assert rc == 0 and "evaluation" not in json.loads(out.read_text())


def bench_targets() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "experiments" / "bench_targets.py"
    spec = importlib.util.spec_from_file_location("bench_targets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_targets_reads_a_bench_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    targets = bench_targets()
    result = {"settings": {"default_mode": "fp32"}, "eval_speedup_vs_rerun": 4.5,
              "eval_vs_floor": 2.0, "conv_ceiling": {"fp32": {"share": 0.7}},
              "evaluation": {"fp32": {"vs_backbone": None, "seconds": {"total": 90.0}}}}
    assert targets.check_targets(result) == {
        "eval_speedup_vs_rerun": True, "eval_vs_floor": False, "conv_share_fp32": True,
        "evaluation_vs_backbone": None, "evaluation_seconds": False}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(result))
    assert targets.main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "eval_speedup_vs_rerun 4.5 (target >= 4): met"
    assert lines[1] == "eval_vs_floor 2 (target <= 1.3): not met"
    assert lines[3] == "evaluation_vs_backbone: not measured (target <= 1.5)"
    assert lines[4] == "evaluation_seconds 90 (target <= 60): not met"


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="repeats"):
        run_benchmark("cpu", repeats=0)
