"""The trainer (canetlib.training.recipe): recipe, checkpoints, exact resume, torchrun, bad input."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import subprocess_env, tiny_config, train_module_argv

from canetlib.cli import main
from canetlib.model import checkpoint as ckpt_io
from canetlib.training.configs import TrainConfig, get_config
from canetlib.training.engine import DistInfo
from canetlib.training.episodes import HeldOutSource, held_out, rank_batches
from canetlib.training.history import HistoryMemory
from canetlib.training.recipe import pixel_loss, train
from canetlib.training.start import poly_lr


# --------------------------------------------------------------------------- pieces
def test_pixel_loss_ignores_255() -> None:
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 1] = 5.0  # confident foreground everywhere
    target = torch.ones(1, 8, 8, dtype=torch.long)
    low = float(pixel_loss(logits, target))
    target[0, :4] = 0
    high = float(pixel_loss(logits, target))
    target[0, :4] = 255  # the wrong half is ignored again
    assert float(pixel_loss(logits, target)) == pytest.approx(low) and high > 1.0
    assert float(pixel_loss(logits, torch.full((1, 8, 8), 255))) == 0.0


def test_poly_lr_is_optional() -> None:
    cfg = tiny_config()
    assert poly_lr(cfg.replace(poly_power=0.0), 50, 100) == cfg.lr
    assert poly_lr(cfg.replace(poly_power=1.0), 50, 100) == pytest.approx(cfg.lr / 2)


def test_history_memory_dropout_and_state() -> None:
    mem = HistoryMemory(4)
    assert mem.inputs([0, 1], 0.7, 0, 1, torch.device("cpu")) is None  # empty at start
    fg = torch.rand(2, 3, 3)
    mem.update(torch.tensor([1, 3]), fg)
    keep = mem.inputs([0, 1, 3], 0.0, 0, 1, torch.device("cpu"))
    assert keep is not None and keep.shape == (3, 2, 3, 3)
    assert torch.equal(keep[0], torch.zeros(2, 3, 3))  # no prediction yet: empty mask
    assert torch.allclose(keep[1, 1], fg[0], atol=1e-3)
    assert torch.allclose(keep[1, 0] + keep[1, 1], torch.ones(3, 3))
    drop = mem.inputs([1, 3], 1.0, 0, 1, torch.device("cpu"))
    assert drop is not None and not drop.any()  # pr = 1: always the empty mask
    # pr = 0.7: the coin depends on (seed, epoch, index) only
    many = HistoryMemory(400)
    many.update(torch.arange(400), torch.ones(400, 1, 1))
    a = many.inputs(list(range(400)), 0.7, 5, 2, torch.device("cpu"))
    b = many.inputs(list(range(400)), 0.7, 5, 2, torch.device("cpu"))
    assert a is not None and b is not None and torch.equal(a, b)
    kept = float((a[:, 1] > 0).float().mean())
    assert 0.2 < kept < 0.4
    copy = HistoryMemory(4)
    copy.load_state_dict(mem.state_dict())
    assert torch.equal(copy.fg, mem.fg) and torch.equal(copy.valid, mem.valid)
    with pytest.raises(ValueError, match="holds 4 episodes"):
        HistoryMemory(5).load_state_dict(mem.state_dict())


def test_ranks_take_disjoint_shards() -> None:
    cfg = tiny_config("batch_size=4", "episodes=16")
    one = rank_batches(cfg, 3, DistInfo(0, 1, 0), 16)
    two = [rank_batches(cfg, 3, DistInfo(r, 2, r), 16) for r in range(2)]
    for step, batch in enumerate(one):
        a, b = two[0][step], two[1][step]
        assert len(a) == len(b) == 2 and not set(a) & set(b)
        assert a + b == batch  # together the ranks see the 1-process batch
    assert sorted(i for b in one for _, i in b) == list(range(16))
    assert rank_batches(cfg, 4, DistInfo(), 16) != one  # reshuffled every epoch


def test_validation_images_are_held_out_of_training() -> None:
    from canetlib.data import make_source

    src = make_source("synthetic", train_images_per_class=3)
    train_src = HeldOutSource(src, 0, 0.3, "train")
    val_src = HeldOutSource(src, 0, 0.3, "val")
    train_ids = {i for i, _ in train_src.image_pairs("train")}
    val_ids = {i for i, _ in val_src.image_pairs("test")}
    assert train_ids and val_ids and not train_ids & val_ids
    assert train_ids | val_ids == {i for i, _ in src.image_pairs("train")}
    assert all(not i.startswith("test/") for i in val_ids)  # never a test image
    assert val_src.test_classes(0) == src.train_classes(0)  # never a test class
    assert held_out("x", 1, 0.0) is False


# --------------------------------------------------------------------------- runs
def test_tiny_run_writes_checkpoint_and_log(tmp_path: Path) -> None:
    cfg = tiny_config("epochs=2", "save_every=3")
    res = train(cfg, tmp_path, progress=False)
    assert res.step == res.total_steps == 8 and len(res.losses) == 8
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("model", "step", "optimizer", "rng", "history", "train_config", "model_config"):
        assert key in state
    assert state["step"] == 8 and state["history"]["valid"].all()
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["history"]["fg"].shape == (8, 8, 8)  # feature grid of a 64 px crop
    assert TrainConfig.from_dict(state["train_config"]) == cfg
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,loss,lr,seconds" and len(rows) == 9
    assert [r.split(",")[1] for r in rows[1:]] == ["0"] * 4 + ["1"] * 4
    model = ckpt_io.load_model(tmp_path / "model.pt")
    assert model.config.width == 16
    # the frozen backbone did not move
    torch.manual_seed(cfg.seed)
    from canetlib import CANet

    ref = CANet.from_config(tiny_config().model_config(), pretrained=False)
    for k, v in ref.backbone.state_dict().items():
        assert torch.equal(v, state["model"][f"backbone.{k}"])


def test_resume_takes_a_retired_option_only_at_its_present_value(tmp_path: Path) -> None:
    cfg = tiny_config()
    train(cfg, tmp_path, max_steps=1, progress=False)
    last = tmp_path / "last.pt"
    state = torch.load(last, weights_only=True)
    state["train_config"].update(iom_history="memory", wrong_supports=0.0)  # an older run's
    ckpt_io.save_atomic(state, last)
    assert train(cfg, tmp_path, max_steps=2, resume=True, progress=False).step == 2
    state = torch.load(last, weights_only=True)
    state["train_config"]["iom_history"] = "own"
    ckpt_io.save_atomic(state, last)
    with pytest.raises(ValueError) as err:
        train(cfg, tmp_path, max_steps=3, resume=True, progress=False)
    assert str(err.value) == (f"{last} was trained with the experiment option "
                              "iom_history='own', which canetlib does not have; only "
                              "iom_history='memory', what canetlib does, can be read")


def test_output_folder_rules(tmp_path: Path) -> None:
    cfg = tiny_config()
    train(cfg, tmp_path, max_steps=1, progress=False)
    with pytest.raises(ValueError, match="already holds a run.*--resume.*--overwrite"):
        train(cfg, tmp_path, max_steps=1, progress=False)
    with pytest.raises(ValueError, match="one of --resume and --overwrite"):
        train(cfg, tmp_path, max_steps=1, resume=True, overwrite=True, progress=False)
    res = train(cfg, tmp_path, max_steps=1, overwrite=True, progress=False)
    assert res.step == 1
    res = train(cfg, tmp_path, max_steps=2, resume=True, progress=False)
    assert res.step == 2 and len(res.losses) == 1


def test_resume_refuses_another_config(tmp_path: Path) -> None:
    train(tiny_config(), tmp_path, max_steps=1, progress=False)
    with pytest.raises(ValueError, match=r"another configuration.*lr: checkpoint 0\.001 != "
                                         r"requested 0\.02"):
        train(tiny_config("lr=0.02"), tmp_path, max_steps=2, resume=True, progress=False)


def test_resume_refuses_another_architecture(tmp_path: Path) -> None:
    train(tiny_config(), tmp_path, max_steps=1, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    wide = train(tiny_config("width=8"), tmp_path / "other", max_steps=1, progress=False).model
    state["model"] = wide.state_dict()  # same config record, tensors of another model
    ckpt_io.save_atomic(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="does not match the model architecture.*shape"):
        train(tiny_config(), tmp_path, max_steps=2, resume=True, progress=False)


def test_nan_loss_stops_naming_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import canetlib.training.recipe as tr

    real = tr.pixel_loss
    calls = {"n": 0}

    def poisoned(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = real(logits, target)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(tr, "pixel_loss", poisoned)
    with pytest.raises(ValueError, match="loss is nan at step 2"):
        train(tiny_config(), tmp_path, max_steps=4, progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 1


def test_cli_bad_config_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--config", "pascal-3shot", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown config 'pascal-3shot'" in err and "synthetic-1shot" in err


def _step_of(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["step"])
    except (OSError, RuntimeError):  # not there yet
        return -1


class Killed(BaseException):
    """Stands for SIGKILL inside the process: no handler of the trainer may catch it."""


def _assert_same_run(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two ``last.pt`` states hold the same step, weights, optimizer state and IOM memory."""
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["state"] and a["optimizer"]["state"].keys() == b["optimizer"][
        "state"].keys()
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert sa.keys() == sb.keys()
        for key in sa:  # AdamW moments and step counts (momentum buffers for SGD)
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key
    assert torch.equal(a["history"]["fg"], b["history"]["fg"])
    assert torch.equal(a["history"]["valid"], b["history"]["valid"])


def _log_rows(folder: Path) -> list[list[str]]:
    return [r.split(",") for r in (folder / "log.csv").read_text().splitlines()[1:]]


def test_killed_and_resumed_run_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: a run stopped dead after step 5 (checkpoint at 4, log row 5 written) and
    resumed ends with the tensors, memory and losses of an unbroken run of 9 steps."""
    import canetlib.training.recipe as tr

    cfg, steps = tiny_config("save_every=2"), 9
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    unbroken = train(cfg, whole, max_steps=steps, progress=False)
    real, calls = tr._train_step, {"n": 0}

    def dies_at_step_6(*args: Any, **kwargs: Any) -> float:
        calls["n"] += 1
        if calls["n"] == 6:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "_train_step", dies_at_step_6)
    with pytest.raises(Killed):
        train(cfg, broken, max_steps=steps, progress=False)
    monkeypatch.setattr(tr, "_train_step", real)
    assert _step_of(broken / "last.pt") == 4 and len(_log_rows(broken)) == 5
    assert not (broken / "model.pt").exists()
    resumed = train(cfg, broken, max_steps=steps, resume=True, progress=False)
    assert resumed.step == steps and resumed.losses == unbroken.losses[4:]
    _assert_same_run(torch.load(whole / "last.pt", weights_only=True),
                     torch.load(broken / "last.pt", weights_only=True))
    # the log has one row per step, the killed run's row 5 replaced by the resumed one
    rows = _log_rows(broken)
    assert [int(r[0]) for r in rows] == list(range(1, steps + 1))
    assert [r[2] for r in rows] == [r[2] for r in _log_rows(whole)]
    a, b = ckpt_io.load(whole / "model.pt")["model"], ckpt_io.load(broken / "model.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigkill_and_resume_is_exact(tmp_path: Path) -> None:
    """A run killed with SIGKILL and resumed ends with the tensors of an unbroken run
    (three CLI processes; test_killed_and_resumed_run_is_exact checks the same in process)."""
    steps = "9"
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    env = subprocess_env()
    subprocess.run([sys.executable, *train_module_argv(whole, "--max-steps", steps)], env=env, check=True,
                   capture_output=True, timeout=120)
    proc = subprocess.Popen([sys.executable, *train_module_argv(broken, "--max-steps", steps)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while _step_of(broken / "last.pt") < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = _step_of(broken / "last.pt")
    assert 3 <= killed_at < int(steps)
    subprocess.run([sys.executable, *train_module_argv(broken, "--max-steps", steps, "--resume")], env=env,
                   check=True, capture_output=True, timeout=120)
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(broken / "last.pt", weights_only=True)
    assert a["step"] == int(steps)
    _assert_same_run(a, b)
    # the log has one row per step, the killed run's extra rows dropped
    rows = _log_rows(broken)
    assert [int(r[0]) for r in rows] == list(range(1, int(steps) + 1))
    assert [r[2] for r in rows] == [r[2] for r in _log_rows(whole)]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    out = tmp_path / "ddp"
    res = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", *train_module_argv(out, "--max-steps",
                                                                                  "2")],
                         env=subprocess_env(), capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 2
    # both ranks' predictions reached the history memory (batch 2 = 1 episode per rank)
    assert int(state["history"]["valid"].sum()) == 4
    assert len((out / "log.csv").read_text().splitlines()) == 3  # rank 0 writes alone
    assert res.stdout.count("trained synthetic-1shot") == 1


def test_five_shot_starts_from_the_one_shot_model(tmp_path: Path) -> None:
    one = train(tiny_config(), tmp_path / "one", max_steps=2, progress=False)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(tmp_path / "one" / "model.pt", shipped / "tiny-1shot-fold0.pt")
    cfg = tiny_config("shots=3", "fusion=attention", "optimizer=adamw", "head_init=kaiming",
               f"init_checkpoint={shipped}/tiny-1shot-fold{{fold}}.pt")
    from canetlib.training.start import initial_model

    five = initial_model(cfg)
    a, b = one.model.state_dict(), five.state_dict()
    assert any(k.startswith("attention.") for k in b)
    for k in a:  # everything but the new attention branch comes from the 1-shot model
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-3), k
    res = train(cfg, tmp_path / "five", max_steps=2, progress=False)
    assert res.step == 2
    with pytest.raises(FileNotFoundError):
        initial_model(cfg.replace(fold=1))  # fold 1 never starts from fold 0's model


def test_validation_classes_are_held_out_of_training() -> None:
    from canetlib.data import make_source

    src = make_source("synthetic", train_images_per_class=3)
    train_src = HeldOutSource(src, 0, 0.0, "train", by="classes", classes=3)
    val_src = HeldOutSource(src, 0, 0.0, "val", by="classes", classes=3)
    held = val_src.held_classes(0)
    assert len(held) == 3 and set(held) <= set(src.train_classes(0))
    assert held == train_src.held_classes(0)  # one seeded choice for both parts
    assert val_src.test_classes(0) == held  # validation = classes never trained on
    assert sorted(train_src.train_classes(0)) == sorted(set(src.train_classes(0)) - set(held))
    assert not set(val_src.test_classes(0)) & set(src.test_classes(0))  # never a test class
    assert all(not i.startswith("test/") for i, _ in val_src.image_pairs("test"))
    # no training image shows a held-out class; every validation image shows one
    assert not {c for _, c in train_src.image_pairs("train")} & set(held)
    val_images = {i for i, _ in val_src.image_pairs("test")}
    assert val_images and not val_images & {i for i, _ in train_src.image_pairs("train")}
    assert all(any(c in held for i2, c in val_src.image_pairs("test") if i2 == i)
               for i in val_images)
    # the same classes for every training seed; other folds hold out other classes
    assert HeldOutSource(src, 7, 0.0, "val", by="classes", classes=3).held_classes(0) == held
    assert val_src.held_classes(1) != held and set(val_src.held_classes(1)) <= set(
        src.train_classes(1))
    with pytest.raises(ValueError, match="val_classes must be in 1..14"):
        HeldOutSource(src, 0, 0.0, "val", by="classes", classes=15).held_classes(0)
    with pytest.raises(ValueError, match="by must be one of"):
        HeldOutSource(src, 0, 0.0, "val", by="labels")


def test_class_validation_run(tmp_path: Path) -> None:
    cfg = tiny_config("epochs=2", "val_by=classes", "val_classes=3", "validate_every=1",
               "val_episodes=4")
    res = train(cfg, tmp_path, progress=False)
    assert [v["epoch"] for v in res.validation] == [1, 2]
    rows = (tmp_path / "val.csv").read_text().splitlines()
    assert len(rows) == 3
    from canetlib.training.recipe import build_train_dataset, build_val_dataset

    train_classes = {c for _, c in build_train_dataset(cfg).pairs}
    val_classes = set(build_val_dataset(cfg).classes)
    assert len(val_classes) == 3 and not train_classes & val_classes


def test_runs_inside_the_callers_process_group(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-process gloo group the caller started: DDP is used and changes nothing."""
    import torch.distributed as dist
    import torch.nn.parallel

    wrapped: list[int] = []

    class SpyDDP(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            wrapped.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", SpyDDP)
    plain = train(tiny_config(), tmp_path / "plain", max_steps=3, progress=False)
    assert not wrapped
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        grouped = train(tiny_config(), tmp_path / "grouped", max_steps=3, progress=False)
        assert dist.is_initialized()  # the caller's group is left running
        assert wrapped == [1]
    finally:
        dist.destroy_process_group()
    assert grouped.losses == plain.losses
    a, b = plain.model.state_dict(), grouped.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_validation_classes_are_benchmark_classes_not_base_classes() -> None:
    from canetlib.data import make_source

    src = make_source("synthetic", train_images_per_class=3, fold=0, base_classes=5,
                      base_images_per_class=2)
    held = HeldOutSource(src, 0, 0.0, "val", by="classes", classes=3, fold=0).held_classes(0)
    assert set(held) <= set(src.benchmark_train_classes(0))
    assert max(src.benchmark_train_classes(0)) <= 20 < max(src.train_classes(0))


def test_resume_is_exact_on_the_packaged_imagenet_backbone(tmp_path: Path) -> None:
    """Checkpoints of an EfficientNet-Lite0 run hold only the head: resuming must load the
    backbone from its package again (it once came back randomly initialised)."""
    cfg = get_config("synthetic-imagenet-1shot", [
        "width=16", "train_size=64", "episodes=8", "batch_size=2", "world_images=3",
        "world_per_fold=false", "world_base_classes=0", "threads=1", "num_workers=0",
        "save_every=1"])
    assert isinstance(cfg, TrainConfig)
    whole = train(cfg, tmp_path / "whole", max_steps=6, progress=False)
    train(cfg, tmp_path / "broken", max_steps=3, progress=False)
    resumed = train(cfg, tmp_path / "broken", max_steps=6, resume=True, progress=False)
    assert resumed.losses == whole.losses[3:]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
