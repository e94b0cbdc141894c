"""The run engine (canetlib.training.engine) piece by piece: checkpoints, log, NaN guard, driver."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from canetlib.training.configs import get_config
from canetlib.training.engine import (
    LOG_HEADER,
    DistInfo,
    Run,
    check_loss,
    check_resumable,
    iter_log,
    open_log,
    open_run_folder,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parent.parent


def _payload(step: int) -> dict[str, Any]:
    return {"format": "canetlib", "version": 1, "model_config": {}, "kind": "train",
            "model": {"w": torch.full((3,), float(step))}, "step": step}


def _log(path: Path, steps: int) -> None:
    open_log(path, 0)
    with path.open("a") as f:
        f.writelines(f"{s},0,1.000000,0.001,{s}.000\n" for s in range(1, steps + 1))


def test_atomic_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(_payload(1), path)
    save_checkpoint(_payload(2), path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left
    broken = {**_payload(3), "hook": lambda: None}  # torch.save fails part-way
    # AttributeError up to Python 3.13, PicklingError from 3.14: "Can't pickle local object"
    with pytest.raises((AttributeError, pickle.PicklingError), match="[Cc]an't pickle"):
        save_checkpoint(broken, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    state = torch.load(path, weights_only=True)
    assert state["step"] == 2 and torch.equal(state["model"]["w"], torch.full((3,), 2.0))


def test_log_is_truncated_to_the_resumed_step(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    _log(path, 5)  # a killed run logged steps 4 and 5 after its checkpoint at 3
    open_log(path, 3)
    assert [int(r["step"]) for r in iter_log(path)] == [1, 2, 3]
    assert path.read_text().splitlines()[0] == ",".join(LOG_HEADER)
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]
    fresh = tmp_path / "new" / "log.csv"
    fresh.parent.mkdir()
    open_log(fresh, 0)
    assert fresh.read_text().splitlines() == [",".join(LOG_HEADER)]


def test_nan_guard_names_the_step() -> None:
    assert check_loss(0.5, 3) == 0.5
    with pytest.raises(ValueError, match=r"^training loss is nan at step 7 \(epoch 1\); lower "
                                         r"the learning rate \(--set lr=\.\.\.\) or check"):
        check_loss(float("nan"), 7, epoch=1,
                   hint="lower the learning rate (--set lr=...) or check the data")
    with pytest.raises(ValueError, match=r"^pretraining loss is inf at step 2; lower the "
                                         r"learning rate \(--set lr=\.\.\.\)$"):
        check_loss(float("inf"), 2, what="pretraining")


def test_run_logs_every_step_and_says_when_to_save(tmp_path: Path) -> None:
    saved: list[int] = []
    _log(tmp_path / "log.csv", 4)  # steps past the checkpoint (2) are dropped
    with Run(tmp_path, end=7, save_every=3, state={"step": 2, "seconds": 1.5}) as run:
        while not run.done:
            if run.step_done(0.25, 0.001, epoch=run.step // 4):
                saved.append(run.step)
                run.save(_payload(run.step))
    assert not run.finish()  # last.pt already holds step 7
    assert saved == [3, 6, 7]  # every save_every steps and at the end
    assert run.losses == [0.25] * 5 and run.seconds >= 1.5
    rows = list(iter_log(tmp_path / "log.csv"))
    assert [int(r["step"]) for r in rows] == list(range(1, 8))
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 7
    (tmp_path / "b").mkdir()
    other = Run(tmp_path / "b", end=5, save_every=10)  # no step taken
    assert other.finish() and other.step == 0
    follower = Run(tmp_path / "c", end=2, save_every=1, info=DistInfo(1, 2, 1))
    assert not follower.step_done(0.5, 0.001, 0) and not follower.finish()  # rank 0 saves
    assert not (tmp_path / "c").exists()


def test_folder_rules_and_resumable_check(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert open_run_folder(tmp_path, False, False) is None  # a folder without a run is fine
    save_checkpoint(_payload(1), tmp_path / "last.pt")
    (tmp_path / "backbone.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="already holds a run"):
        open_run_folder(tmp_path, False, False)
    assert open_run_folder(tmp_path, True, False) == tmp_path / "last.pt"
    open_run_folder(tmp_path, False, True, extra=("backbone.pt",))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # only the run's files go
    cfg = get_config("synthetic-1shot")
    state = {"kind": "train", "train_config": cfg.to_dict()}
    check_resumable(state, cfg, tmp_path, kind="train", config_key="train_config",
                    what="training", refusal="no")
    with pytest.raises(ValueError, match=r"another configuration.*lr: checkpoint"):
        check_resumable(state, cfg.replace(lr=1.0), tmp_path, kind="train",
                        config_key="train_config", what="training", refusal="no")
    with pytest.raises(ValueError, match="not a pretraining checkpoint"):
        check_resumable(state, cfg, tmp_path, kind="pretrain", config_key="pretrain_config",
                        what="pretraining", refusal="not a pretraining checkpoint")


def test_pretrain_and_engine_do_not_import_the_trainer() -> None:
    """Pretraining, the engine and the episodes need nothing of the CANet recipe."""
    code = ("import sys, canetlib.training.pretrain, canetlib.training.engine, canetlib.training.episodes; "
            "sys.exit('canetlib.training.recipe was imported' if 'canetlib.training.recipe' in sys.modules else 0)")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
