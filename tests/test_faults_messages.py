"""Bad input refused with one line naming the argument, its value and what is allowed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from helpers import FakeEpisodes, make_episode, scenes, tiny_model, train_cli

from canetlib.cli import main
from canetlib.data import ImageMaskSource, make_dataset
from canetlib.evaluation import resolve_input_size
from canetlib.model import checkpoint


@pytest.fixture()
def ckpt(tmp_path: Path) -> str:
    """A tiny model checkpoint."""
    path = tmp_path / "tiny.pt"
    checkpoint.save_atomic(checkpoint.model_payload(tiny_model()), path)
    return str(path)


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a refused command."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def cuda_args(command: str, ckpt: str, out: Path) -> list[str]:
    """``command`` with ``--device cuda`` and otherwise valid arguments."""
    if command == "evaluate":
        return ["evaluate", "--dataset", "synthetic", "--checkpoint", ckpt, "--episodes", "2",
                "--device", "cuda"]
    if command == "segment":
        return ["segment", "--checkpoint", ckpt, "--support", "s.png", "--support-mask", "m.png",
                "--query", "q.png", "--out", str(out / "p.png"), "--device", "cuda"]
    if command == "bench":
        return ["bench", "--device", "cuda", "--json", str(out / "b.json")]
    return train_cli(out / "run", "--device", "cuda")


@pytest.mark.parametrize("command", ["evaluate", "segment", "train", "bench"])
def test_cuda_without_a_gpu_is_named(command: str, ckpt: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    out = tmp_path / "out"
    assert main(cuda_args(command, ckpt, out)) == 2
    assert "--device cuda: no CUDA device is available" in one_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("content", [b"hello, I am text\n", b"", b"PK not a zip"])
def test_text_file_checkpoint_is_not_a_pytorch_file(content: bytes, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=f"{bad}: not a PyTorch checkpoint file"):
        checkpoint.load(bad)
    assert main(["evaluate", "--dataset", "synthetic", "--checkpoint", str(bad),
                 "--episodes", "2", "--device", "cpu"]) == 2
    assert f"error: {bad}: not a PyTorch checkpoint file" in one_error(capsys)


def test_training_episodes_of_a_test_only_source_are_refused_when_built() -> None:
    source = ImageMaskSource(*scenes(), ["square", "disc"], name="mine")
    assert source.num_folds == 1
    with pytest.raises(ValueError, match=r"source 'mine' has no train pool for fold 0 .*"
                                         r"allows split='test' only"):
        make_dataset(source=source, split="train", episodes=2)
    assert make_dataset(source=source, split="test", episodes=2)[0]["class_id"] in (1, 2)


@pytest.mark.parametrize("made", [False, True])
def test_resume_without_a_saved_run_is_refused(made: bool, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    if made:
        out.mkdir()
    assert main(train_cli(out, "--resume", "--max-steps", "1")) == 2
    assert one_error(capsys) == (f"error: --resume: there is no {out / 'last.pt'} to resume from "
                                 f"(no run was saved in {out}); drop --resume to start a new "
                                 "run there\n")
    assert out.exists() == made and (not made or not any(out.iterdir()))


SIZE_RULE = "pixels; the model needs at least 16x16 (two cells of its stride-8 feature grid)"


@pytest.mark.parametrize(("extra", "message"), [
    (["--per-episode"], ("error: --per-episode writes every episode's IoU to the JSON file, "
                         "which is not asked for; add --json FILE (or drop --per-episode)")),
    (["--fold", "4"], "error: --fold must be in 0..3 (synthetic has 4 folds), got 4"),
    (["--fold", "-1"], "error: --fold must be in 0..3 (synthetic has 4 folds), got -1"),
    (["--input-size", "7"], f"error: --input-size is 7x7 {SIZE_RULE}"),
    (["--input-size", "8"], f"error: --input-size is 8x8 {SIZE_RULE}"),
    (["--input-size", "15"], f"error: --input-size is 15x15 {SIZE_RULE}"),
    (["--support-damage", "1.5"], "error: --support-damage must be in [0, 1], got 1.5"),
    (["--part-recolour", "-1"], "error: --part-recolour must be in [0, 1], got -1.0"),
])
def test_evaluate_options_are_checked_before_any_output(
        extra: list[str], message: str, ckpt: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    assert main(["evaluate", "--dataset", "synthetic", "--checkpoint", ckpt, "--episodes", "2",
                 "--device", "cpu", *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == message + "\n"


def test_part_recolour_on_another_dataset_is_refused(
        ckpt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--dataset", "pascal", "--checkpoint", ckpt, "--episodes", "2",
                 "--part-recolour", "0.5"]) == 2
    assert capsys.readouterr().err == ("error: --part-recolour is an option of the embedded "
                                       "world (--dataset synthetic), not of pascal\n")


@pytest.mark.parametrize("size", [7, 8, (16, 15)])
def test_api_input_size_has_the_same_minimum(size: int | tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=f"input_size is .* {re.escape(SIZE_RULE)}"):
        resolve_input_size(FakeEpisodes(1), size)


def hide_modules(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``names`` fail to import, as when the package is not installed."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(("argv", "hidden", "extra"), [
    (["evaluate", "--dense-crf", "--crf-backend", "pydensecrf"],
     ("pydensecrf", "pydensecrf.densecrf"), "crf"),
    (["prepare", "coco"], ("pycocotools", "pycocotools.mask"), "coco"),
])
def test_missing_extra_is_one_line_with_the_pip_command(
        argv: list[str], hidden: tuple[str, ...], extra: str, ckpt: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    hide_modules(monkeypatch, *hidden)
    monkeypatch.delitem(sys.modules, "canetlib.data.prepare.coco", raising=False)
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    root = tmp_path / "root"
    rest = ["--root", str(root)] if argv[0] == "prepare" else \
        ["--dataset", "synthetic", "--checkpoint", ckpt, "--episodes", "2", "--device", "cpu"]
    assert main([*argv, *rest]) == 2
    err = one_error(capsys)
    assert f"needs the {hidden[0] if extra == 'coco' else 'pydensecrf2'} package" in err
    assert f'pip install "canetlib[{extra}]"' in err and not root.exists()


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.long])
def test_0_255_masks_in_predict_say_that_255_is_ignore(dtype: torch.dtype) -> None:
    q, s, m = make_episode(size=32)
    m = (m == 1).to(dtype) * 255
    with pytest.raises(ValueError, match=r"support mask 0 of episode 0 is empty: it holds "
                                         r"255 but no 1, and 255 means ignore, the object is 1"):
        tiny_model().predict(q, s, m)
    assert tiny_model().predict(q, s, m / 255).probs[-1].shape[-2:] == (32, 32)
