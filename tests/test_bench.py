"""The benchmark: JSON keys, positive numbers, and a fair reference-style comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from evalfakes import tiny_model

from canetlib.bench import episode_batch, evaluator_path, rerun_path, run_benchmark
from canetlib.cli import main

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
    assert set(r["modes"]) == {"fp32"}
    assert r["settings"]["size"] == 48 and r["settings"]["iterations"] == 4
    flops = r["flops_g"]
    assert flops["rerun_episode"] > flops["evaluator_episode"] > 0
    assert 1 < flops["ideal_speedup_vs_rerun"] < 5
    assert set(r["meets_targets"]) == {"eval_speedup_vs_rerun", "eval_vs_floor"}


def test_bench_command_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    rc = main(["bench", "--json", str(out), "--device", "cpu", "--size", "40", "--backbone",
               "resnet-tiny", "--width", "16", "--repeats", "1", "--warmup", "0", "--batch", "2",
               "--train-batch", "2", "--no-flops", "--iterations", "1"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["eval_speedup_vs_rerun"] > 0 and data["train_steps_per_s"] > 0
    assert "flops_g" not in data
    assert "eval_speedup_vs_rerun" in capsys.readouterr().out


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="repeats"):
        run_benchmark("cpu", repeats=0)
