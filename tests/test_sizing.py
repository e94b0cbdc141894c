"""The model input size: the evaluator's default per dataset agrees with the training
configs; a checkpoint's recorded evaluation side is used by ``evaluate`` and ``segment``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import segment_inputs, tiny_canet

from canetlib.cli import main
from canetlib.data import make_dataset
from canetlib.evaluation.sizing import (
    REFERENCE_INPUT_SIZE,
    default_input_size,
    resolve_input_size,
)
from canetlib.model import checkpoint
from canetlib.training.configs import CONFIGS


@pytest.mark.parametrize("name", [n for n in CONFIGS if n.endswith("-1shot")])
def test_default_input_size_is_the_training_crop(name: str) -> None:
    dataset = name.removesuffix("-1shot")
    assert default_input_size(dataset) == CONFIGS[name].train_size  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["folder", "fss1000", "own", None])
def test_other_datasets_use_the_reference_size(name: str | None) -> None:
    assert default_input_size(name) == REFERENCE_INPUT_SIZE == 321


def test_the_synthetic_world_is_fed_at_128() -> None:
    assert default_input_size("synthetic") == 128


@pytest.fixture
def trained_at_64(tmp_path: Path) -> Path:
    """A tiny model checkpoint whose training config says 64 px."""
    path = tmp_path / "model.pt"
    payload = {**checkpoint.model_payload(tiny_canet()), "train_config": {"train_size": 64}}
    return checkpoint.save_atomic(payload, path)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_recorded_side_is_the_models_input_size(trained_at_64: Path, tmp_path: Path) -> None:
    before = _digest(trained_at_64)
    assert checkpoint.load_model(trained_at_64).input_size == 64
    out = checkpoint.record_input_size(trained_at_64, tmp_path / "at96.pt", 96,
                                       "validation episodes, smallest side tied with the best")
    ckpt = checkpoint.load(out)
    assert ckpt["input_size"] == 96 == checkpoint.recorded_input_size(ckpt)
    assert checkpoint.trained_input_size(ckpt) == 64
    assert ckpt["input_size_chosen_by"].startswith("validation episodes")
    model = checkpoint.load_model(out)
    assert model.input_size == 96
    ds = make_dataset("synthetic", fold=0, split="test", shots=1, episodes=1, seed=0)
    assert resolve_input_size(ds, None, model) == (96, 96)
    assert resolve_input_size(ds, 80, model) == (80, 80)
    assert _digest(trained_at_64) == before  # the source is left as it was


def test_without_a_recorded_side_the_training_crop_is_used(trained_at_64: Path) -> None:
    assert checkpoint.recorded_input_size(checkpoint.load(trained_at_64)) == 64
    assert checkpoint.recorded_input_size({"model_config": {}}) is None


@pytest.mark.parametrize("side", [8, 0, True, 96.0, "96"])
def test_an_impossible_side_is_refused(side: object) -> None:
    with pytest.raises(ValueError, match="input size must be a whole number"):
        checkpoint.with_input_size({}, side, "rule")  # type: ignore[arg-type]


def test_the_choice_must_be_said() -> None:
    with pytest.raises(ValueError, match="chosen_by is empty"):
        checkpoint.with_input_size({}, 96, "  ")


def test_set_input_size_writes_a_new_file_only(trained_at_64: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "at96.pt"
    argv = ["set-input-size", str(trained_at_64), "--size", "96", "--chosen-by", "a rule",
            "--out", str(out)]
    assert main(argv) == 0
    assert "evaluated at 96 px (trained at 64 px)" in capsys.readouterr().out
    before = _digest(out)
    assert main(argv) != 0  # the output exists: refused, left as it was
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "at96.pt" in err[0]
    assert _digest(out) == before
    small = tmp_path / "small.pt"
    assert main(["set-input-size", str(trained_at_64), "--size", "4", "--chosen-by", "r",
                 "--out", str(small)]) != 0
    assert "whole number of pixels" in capsys.readouterr().err
    assert not small.exists()


def test_segment_feeds_the_recorded_side(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    paths = segment_inputs(tmp_path)
    at48 = checkpoint.record_input_size(paths["ckpt"], tmp_path / "at48.pt", 48, "a rule")
    argv = ["segment", "--support", str(paths["support"]), "--support-mask", str(paths["mask"]),
            "--query", str(paths["query"]), "--iterations", "1", "--device", "cpu"]
    assert main([*argv, "--checkpoint", str(at48), "--out", str(tmp_path / "a.png")]) == 0
    assert "input 48x48" in capsys.readouterr().out
    assert main([*argv, "--checkpoint", str(at48), "--size", "40",
                 "--out", str(tmp_path / "b.png")]) == 0
    assert "input 40x40" in capsys.readouterr().out
