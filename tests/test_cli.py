"""The command line: commands listed, checkpoint names resolved, evaluate's JSON."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest
from helpers import tiny_model

from canetlib.cli import COMMANDS, build_parser, main
from canetlib.data import PASCAL_CLASSES
from canetlib.model import checkpoint

FOLD0 = set(PASCAL_CLASSES[:5])


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser, as ``python -m canetlib`` builds it."""
    (action,) = [a for a in build_parser()._actions
                 if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``--help`` output of ``argv``, whitespace-normalised (so wrapping does not matter)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_lists_every_command_with_its_summary(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per entry: no hyphen breaks
    assert list(COMMANDS) == ["prepare", "train", "evaluate", "segment", "bench", "set-input-size"]
    assert list(_subparsers()) == list(COMMANDS)  # nothing registered beyond the table
    out = _help(["--help"], capsys)
    for name, module_name in COMMANDS.items():
        summary = " ".join(importlib.import_module(module_name).HELP.split())
        assert f"{name} {summary}" in out, name


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_help_lists_its_options(
        command: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's --help starts from its summary and lists every option and positional
    its parser accepts, each followed by its own help text (``%`` expanded)."""
    monkeypatch.setenv("COLUMNS", "1000")
    parser = _subparsers()[command]
    formatter = parser._get_formatter()
    actions = [a for a in parser._actions if a.help != argparse.SUPPRESS]
    assert any(a.option_strings and a.dest != "help" for a in actions), command
    out = _help([command, "--help"], capsys)
    assert " ".join(importlib.import_module(COMMANDS[command]).HELP.split()) in out
    for action in actions:
        entry = formatter._format_action_invocation(action)
        if action.help:
            entry += " " + " ".join(formatter._expand_help(action).split())
        assert entry in out, (command, entry)


@pytest.fixture()
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "shipped"
    checkpoint.save_atomic(checkpoint.model_payload(tiny_model()), folder / "tiny-1shot.pt")
    monkeypatch.setenv("CANETLIB_CHECKPOINTS", str(folder))
    return folder


def test_unknown_checkpoint_lists_the_shipped_ones(shipped: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["evaluate", "--dataset", "synthetic", "--checkpoint", "no-such-model",
               "--episodes", "2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "tiny-1shot" in err


def evaluate_json(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "result.json"
    rc = main(["evaluate", "--dataset", "synthetic", "--fold", "0", "--episodes", "6",
               "--checkpoint", "tiny-1shot", "--iterations", "2", "--batch-size", "3",
               "--device", "cpu", "--no-progress", "--json", str(out), *extra])
    assert rc == 0
    return json.loads(out.read_text())


def test_evaluate_writes_every_iteration_and_the_settings(
        shipped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = evaluate_json(tmp_path, "--seed", "3")
    for key in ("miou", "fbiou", "miou_per_iteration", "fbiou_per_iteration", "per_class_iou",
                "episodes", "settings"):
        assert key in data
    assert len(data["miou_per_iteration"]) == 3 == len(data["fbiou_per_iteration"])
    assert data["miou"] == data["miou_per_iteration"][-1]
    assert data["episodes"] == 6 and data["seed"] == 3
    assert set(data["per_class_iou"]) <= FOLD0
    s = data["settings"]
    assert (s["dataset"], s["fold"], s["shots"], s["seeds"]) == ("synthetic", 0, 1, [3])
    assert s["input_size"] == [128, 128] and s["iterations"] == 2
    assert s["checkpoint"] == "tiny-1shot" and s["multi_scale"] is False
    table = capsys.readouterr().out
    assert "CANet-Init" in table and "mIoU" in table


def test_evaluate_seeds_multi_scale_and_boxes(shipped: Path, tmp_path: Path) -> None:
    data = evaluate_json(tmp_path, "--seeds", "2", "--multi-scale", "--box-support",
                         "--input-size", "64")
    assert data["seeds"] == [0, 1] and len(data["runs"]) == 2
    assert data["miou"] == pytest.approx(sum(r["miou"] for r in data["runs"]) / 2)
    assert data["miou_std"] >= 0 and len(data["miou_per_iteration_std"]) == 3
    assert data["settings"]["scales"] == [0.7, 1.0, 1.3]
    assert data["settings"]["box_support"] is True and data["episodes"] == 12


def test_evaluate_custom_scales(shipped: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    data = evaluate_json(tmp_path, "--scales", "1.3", "--input-size", "64")
    assert data["settings"]["scales"] == [1.3] and data["settings"]["multi_scale"] is False
    assert ", scales 1.3" in capsys.readouterr().out
    for bad in (["--scales", "0.7,x"], ["--scales", "-1"], ["--scales", "1", "--multi-scale"]):
        rc = main(["evaluate", "--dataset", "synthetic", "--checkpoint", "tiny-1shot",
                   "--episodes", "2", *bad])
        assert rc == 2
        assert "--scales" in capsys.readouterr().err


def test_evaluate_dense_crf(shipped: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    data = evaluate_json(tmp_path, "--dense-crf", "--input-size", "64")
    assert data["settings"]["dense_crf"] is True
    assert data["settings"]["postprocess"]["iterations"] == 5
    assert data["settings"]["postprocess"]["backend"] == "exact"  # the default, installed or not
    assert ", DenseCRF" in capsys.readouterr().out


def test_kshot_needs_a_fusion(shipped: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["evaluate", "--dataset", "synthetic", "--episodes", "2", "--shots", "2",
               "--checkpoint", "tiny-1shot", "--device", "cpu"])
    assert rc == 2 and "--fusion" in capsys.readouterr().err
    data = evaluate_json(tmp_path, "--shots", "2", "--fusion", "mask-avg", "--input-size", "64")
    assert data["settings"]["fusion"] == "mask-avg" and data["settings"]["shots"] == 2


def test_evaluate_reports_both_baselines_in_the_same_run(
        shipped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = evaluate_json(tmp_path, "--baseline", "prototype")
    proto = data["baselines"]["prototype"]
    assert 0.0 <= proto["miou"] <= 100.0 and 0.0 <= data["all_objects_miou"] <= 100.0
    fit = proto["fit"]
    assert fit["classes"] == "training classes of the fold" and fit["episodes"] == 300
    assert str(fit["threshold"]) in fit["curve"]  # JSON keys are strings
    table = capsys.readouterr().out
    assert "every object of the query marked" in table and "prototype matcher" in table
