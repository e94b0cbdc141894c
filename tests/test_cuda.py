"""The CUDA path: AMP, channels_last, the evaluator and trainer on a GPU, DDP over nccl.

Every test here needs a GPU and is skipped without one (CI has none): run
them on a GPU machine with ``python -m pytest tests/test_cuda.py`` (see
``scripts/gpu_check.sh``). Tolerances compare against the fp32/CPU results
of the same weights, so a broken autocast, memory format or device move
fails, while the rounding of bf16 does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, make_episode, subprocess_env, tiny_canet, tiny_config, train_module_argv

from canetlib import CANet
from canetlib.data import make_dataset
from canetlib.evaluation import evaluate
from canetlib.model import checkpoint as ckpt_io
from canetlib.model.runtime import amp_dtype, autocast
from canetlib.training.recipe import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _tiny_model() -> CANet:
    return tiny_canet(backbone_widths=(16, 32, 64, 64), width=32, fusion="attention").eval()


def test_amp_is_bf16_or_fp16() -> None:
    assert amp_dtype(CUDA) in (torch.bfloat16, torch.float16)
    assert amp_dtype(torch.device("cpu")) is None


def test_channels_last_and_amp_match_fp32() -> None:
    model = _tiny_model()
    query, supports, masks = make_episode(batch=2, shots=3, size=97)
    with torch.inference_mode():
        ref = [x.float() for x in model(query, supports, masks, iterations=3).logits]
        model.to(CUDA)
        q, s, m = query.to(CUDA), supports.to(CUDA), masks.to(CUDA)
        fp32 = model(q, s, m, iterations=3).logits
        model.use_channels_last(True)
        convs = [p for p in model.iom.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        cl = model(q.contiguous(memory_format=torch.channels_last), s, m, iterations=3).logits
        with autocast(CUDA):
            amp = model(q.contiguous(memory_format=torch.channels_last), s, m,
                        iterations=3).logits
        model.use_channels_last(False)
    assert len(ref) == len(fp32) == len(cl) == len(amp) == 4
    for a, b, c, d in zip(ref, fp32, cl, amp):
        scale = a.abs().max().item() + 1e-6
        assert (b.float().cpu() - a).abs().max().item() < 1e-3 * scale + 1e-4  # GPU fp32 = CPU
        assert (c.float().cpu() - a).abs().max().item() < 1e-3 * scale + 1e-4  # memory format
        assert d.dtype in (torch.bfloat16, torch.float16, torch.float32)
        assert (d.float().cpu() - a).abs().max().item() < 0.1 * scale  # reduced precision
        agree = (d.float().cpu().argmax(1) == a.argmax(1)).float().mean().item()
        assert agree > 0.9


def test_evaluator_on_cuda_matches_cpu() -> None:
    """The shipped 1-shot model on 24 seeded episodes: CPU, CUDA fp32 and CUDA AMP."""
    ds = make_dataset("synthetic", split="test", fold=0, shots=1, episodes=24, seed=3)
    model = ckpt_io.load_model("synthetic-1shot-fold0")
    cpu = evaluate(model, ds, device="cpu", input_size=128)
    fp32 = evaluate(model, ds, device="cuda", amp=False, input_size=128)
    amp = evaluate(model, ds, device="cuda", input_size=128)
    assert fp32["settings"]["device"].startswith("cuda") and amp["settings"]["amp"]
    assert not fp32["settings"]["amp"]
    for a, b in zip(cpu["miou_per_iteration"], fp32["miou_per_iteration"]):
        assert abs(a - b) < 0.5
    for a, b in zip(cpu["miou_per_iteration"], amp["miou_per_iteration"]):
        assert abs(a - b) < 3.0
    assert next(model.parameters()).device.type == "cuda"
    assert not model._channels_last  # evaluate restores the memory format


def test_trainer_on_cuda_with_amp(tmp_path: Path) -> None:
    cfg = tiny_config("epochs=2")
    res = train(cfg, tmp_path / "run", max_steps=6, device="cuda", progress=False)
    assert res.step == 6 and all(torch.isfinite(torch.tensor(res.losses)))
    assert next(res.model.parameters()).device.type == "cuda"
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True, map_location="cpu")
    assert state["step"] == 6 and "cuda" in state["rng"]
    model = ckpt_io.load_model(tmp_path / "run" / "model.pt")  # loads on a CPU too
    assert next(model.parameters()).device.type == "cpu"
    # resume on the GPU continues from the saved step
    more = train(cfg, tmp_path / "run", max_steps=8, device="cuda", progress=False,
                 resume=True)
    assert more.step == 8 and len(more.losses) == 2


def test_ddp_over_nccl(tmp_path: Path) -> None:
    """torchrun with the nccl backend on this machine's GPUs (one process per GPU)."""
    n = torch.cuda.device_count()
    out = tmp_path / "ddp"
    batch = 2 * n
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={n}", *train_module_argv(out, "--max-steps", "3", "--set",
                                          f"batch_size={batch}")]
    if n == 1:  # torchrun with one process starts no group: start a one-rank nccl group
        cmd = [sys.executable, str(Path(__file__).with_name("ddp_one_rank.py")), str(out)]
    env = subprocess_env()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "backend nccl" in res.stdout or n > 1, res.stdout[-2000:]
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 3
