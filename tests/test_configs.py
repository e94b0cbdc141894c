"""Named configs and their command-line overrides (canetlib.training.configs, canetlib.training.settings):
``--set key=value`` and the fields' own flags, both parsed by tyro."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any

import pytest

from canetlib.cli import main
from canetlib.training.configs import (
    CONFIGS,
    PretrainConfig,
    TrainConfig,
    get_config,
)


def test_required_names_exist() -> None:
    for name in ("synthetic-1shot", "synthetic-5shot", "pascal-1shot", "pascal-5shot",
                 "coco-1shot", "coco-5shot", "synthetic-pretrain"):
        assert name in CONFIGS
    assert isinstance(CONFIGS["synthetic-pretrain"], PretrainConfig)


def test_paper_recipe_is_the_pascal_default() -> None:
    cfg = get_config("pascal-1shot")
    assert isinstance(cfg, TrainConfig)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay) == (0.0025, 0.9, 5e-4)
    assert (cfg.batch_size, cfg.epochs, cfg.mask_dropout) == (4, 200, 0.7)
    assert cfg.poly_power == 0.0  # the reference declared poly but never applied it
    assert cfg.backbone == "resnet50" and cfg.pretrained and cfg.width == 256
    assert get_config("coco-1shot").batch_size == 8
    five = get_config("pascal-5shot")
    assert five.shots == 5 and five.fusion == "attention"


def test_synthetic_configs_use_the_pretrained_backbone() -> None:
    one, five = get_config("synthetic-1shot"), get_config("synthetic-5shot")
    assert one.fusion is None and one.shots == 1
    assert five.fusion == "attention" and five.shots == 5
    for cfg in (one, five):
        assert cfg.backbone == "resnet-tiny" and not cfg.pretrained
        assert cfg.backbone_checkpoint == "synthetic-backbone"


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown config 'nope'.*pascal-1shot.*synthetic-5shot"):
        get_config("nope")


def test_overrides_are_typed() -> None:
    cfg = get_config("synthetic-1shot", ["backbone_widths=8,16,16,16", "lr=0.5", "amp=none",
                                         "channels_last=false", "fusion=attention",
                                         "episodes=none", "blocks=(block2,block3)"])
    assert cfg.backbone_widths == (8, 16, 16, 16)
    assert cfg.lr == 0.5 and cfg.amp is None and cfg.channels_last is False
    assert cfg.fusion == "attention" and cfg.episodes is None
    assert cfg.blocks == ("block2", "block3")
    assert get_config("pascal-1shot", ["fusion=none"]).fusion is None


@pytest.mark.parametrize("item, field, value", [
    ("world_per_fold=false", "world_per_fold", False),
    ("cache_images=TRUE", "cache_images", True),
    ("cache_images=yes", "cache_images", True),
    ("channels_last=0", "channels_last", False),
    ("channels_last=Off", "channels_last", False),
    ("amp=True", "amp", True),
    ("amp=null", "amp", None),
    ("threads=None", "threads", None),
    ("threads=~", "threads", None),
    ("root=", "root", None),                      # empty: None for an optional field
    ("root=/data/voc,sbd", "root", "/data/voc,sbd"),  # a str keeps its commas
    ("name=none", "name", "none"),                # a plain str keeps "none"
    ("init_checkpoint=none", "init_checkpoint", None),
    ("backbone_checkpoint=-weird", "backbone_checkpoint", "-weird"),
    ("backbone_widths=none", "backbone_widths", None),
    ("backbone_widths=[8, 16, 16, 16]", "backbone_widths", (8, 16, 16, 16)),
    ("blocks=block2", "blocks", ("block2",)),
    ("blocks=['block2', 'block3']", "blocks", ("block2", "block3")),
    ("train-size=64", "train_size", 64),          # - or _ in keys
    ("weight-decay = 1e-3", "weight_decay", 1e-3),
    ("iterations=0", "iterations", 0),
    ("val_by=classes", "val_by", "classes"),
])
def test_override_spellings(item: str, field: str, value: Any) -> None:
    got = getattr(get_config("synthetic-1shot", [item]), field)
    assert got == value and type(got) is type(value), (item, got)


def test_overrides_are_parsed_by_tyro(monkeypatch: pytest.MonkeyPatch) -> None:
    import tyro

    from canetlib.training import settings

    assert not hasattr(settings, "parse_value")  # the hand-written parser is gone
    calls: list[list[str]] = []
    real = tyro.cli

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(list(kwargs["args"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(tyro, "cli", spy)
    cfg = get_config("synthetic-1shot", ["lr=0.5", "backbone-widths=8,16,16,16"])
    assert calls == [["--lr=0.5", "--backbone-widths=8,16,16,16"]]
    assert cfg.lr == 0.5 and cfg.backbone_widths == (8, 16, 16, 16)
def test_tiny_backbone_needs_no_imagenet() -> None:
    with pytest.raises(ValueError, match="no ImageNet"):
        get_config("synthetic-1shot", ["pretrained=true"])


def test_round_trip_and_mismatch() -> None:
    cfg = get_config("synthetic-5shot", ["width=32"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    other = cfg.replace(width=16, save_every=3, threads=1)
    diffs = other.mismatch(cfg)
    assert diffs == ["width: checkpoint 32 != requested 16"]  # run-control fields ignored
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    pre = get_config("synthetic-pretrain", ["steps=3"])
    assert PretrainConfig.from_dict(pre.to_dict()) == pre


def test_model_fields_are_the_canet_config() -> None:
    from canetlib.model import MODEL_FIELDS, PAPER_MODEL, CANetConfig

    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for model_field in dataclasses.fields(CANetConfig):  # flat, so that --set width=64 works
        mine = train_fields[model_field.name]
        assert (mine.type, mine.default) == (model_field.type, model_field.default), mine.name
    assert set(MODEL_FIELDS) <= set(train_fields)
    assert TrainConfig().model_config() == PAPER_MODEL
    cfg = get_config("synthetic-1shot", ["width=48", "fusion=mask-avg"])
    model = cfg.model_config()
    assert isinstance(model, CANetConfig) and model.width == 48 and model.fusion == "mask-avg"
    assert model.backbone_widths == cfg.backbone_widths and model.backbone == "resnet-tiny"
    with pytest.raises(ValueError, match="iterations must be an integer >= 0"):
        get_config("synthetic-1shot", ["iterations=-1"])
    with pytest.raises(ValueError, match="pairing must be one of"):
        get_config("synthetic-1shot", ["pairing=product"])


def test_a_shipped_train_config_loads_without_its_retired_option() -> None:
    from canetlib.model import checkpoint

    stored = checkpoint.load("synthetic-imagenet-1shot-fold0")["train_config"]
    assert stored["world_held_glyphs"] is False  # a retired option at its present value
    cfg = TrainConfig.from_dict(stored)
    later = {"world_part_recolour": 0.0, "support_damage": 0.0, "attention_pool": "mean"}  # fields added since: their defaults, the old behaviour
    assert set(later).isdisjoint(stored)
    assert cfg.to_dict() == {**{k: v for k, v in stored.items() if k != "world_held_glyphs"},
                             **later}
    older = {**stored, "iom_history": "memory", "wrong_supports": 0.0}
    assert TrainConfig.from_dict(older) == cfg


def test_a_config_stored_before_an_option_existed_gets_the_value_its_run_used() -> None:
    from canetlib.model import checkpoint

    stored = checkpoint.load("synthetic-1shot-fold0")["train_config"]
    assert "world_per_fold" not in stored  # trained on the world drawn for all folds
    cfg = TrainConfig.from_dict(stored)
    assert cfg.world_per_fold is False and cfg.support_damage == 0.0
    assert cfg.world_part_recolour == 0.0


@pytest.mark.parametrize("key, value", [("iom_history", "own"), ("wrong_supports", 0.5),
                                        ("world_held_glyphs", True)])
def test_a_retired_option_at_another_value_is_refused_in_one_line(key: str, value: Any) -> None:
    from canetlib.training.settings import RetiredOptionError

    stored = {**get_config("synthetic-imagenet-1shot").to_dict(), key: value}
    with pytest.raises(RetiredOptionError) as err:
        TrainConfig.from_dict(stored, source="run/model.pt")
    present = TrainConfig.RETIRED[key]
    assert str(err.value) == (f"run/model.pt was trained with the experiment option "
                              f"{key}={value!r}, which canetlib does not have; only "
                              f"{key}={present!r}, what canetlib does, can be read")
    with pytest.raises(ValueError, match=f"unknown setting '{key}'"):
        get_config("synthetic-imagenet-1shot", [f"{key}={value}"])


def test_pretrain_config_overrides_are_validated_after_parsing() -> None:
    cfg = CONFIGS["synthetic-pretrain"].override(["backbone_widths=8,16,16,16", "steps=3"])
    assert isinstance(cfg, PretrainConfig) and cfg.backbone_widths == (8, 16, 16, 16)
    with pytest.raises(ValueError, match="backbone_widths needs 4 values"):
        cfg.override(["backbone_widths=8,16"])  # validated after parsing


# --------------------------------------------------------------------------- the fields' flags
def test_parse_flags_takes_every_field_as_a_flag() -> None:
    cfg = CONFIGS["synthetic-1shot"].parse_flags(
        ["--lr", "0.5", "--backbone-widths", "8", "16", "16", "16", "--blocks=block2,block3",
         "--fusion", "attention", "--shots", "5", "--pretrained", "false", "--threads", "none",
         "--iterations=2"])
    assert (cfg.lr, cfg.backbone_widths, cfg.blocks) == (0.5, (8, 16, 16, 16),
                                                        ("block2", "block3"))
    assert (cfg.fusion, cfg.shots, cfg.pretrained, cfg.threads, cfg.iterations) == (
        "attention", 5, False, None, 2)
    assert cfg.width == CONFIGS["synthetic-1shot"].width  # the rest: the config's
    with pytest.raises(ValueError, match="bad value for --lr: could not convert"):
        cfg.parse_flags(["--lr", "fast"])
    with pytest.raises(ValueError, match="Unrecognized options: --colour.*not fields of "
                                         "TrainConfig"):
        cfg.parse_flags(["--colour", "red"])
    with pytest.raises(ValueError, match="needs a k-shot fusion"):
        cfg.parse_flags(["--fusion", "none"])  # validated


@pytest.mark.parametrize("name", ["synthetic-1shot", "pascal-5shot", "synthetic-pretrain"])
def test_flags_help_lists_every_field_with_its_default_and_doc(name: str) -> None:
    cfg = CONFIGS[name]
    text = " ".join(cfg.flags_help().split())
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        assert f"--{f.name.replace('_', '-')} " in text, f.name
    lr, steps = ("learning rate", None) if name != "synthetic-pretrain" else (
        "learning rate (SGD)", "--steps INT optimizer steps of the run (default: 2200)")
    assert f"--lr FLOAT {lr} (default: {cfg.lr})" in text
    if steps:
        assert steps in text
    else:
        assert "--amp {none,true,false} CUDA mixed precision (none: on) (default: none)" in text
        assert f"(default: {cfg.name})" in text and "-- data" not in text


# --------------------------------------------------------------------------- train's command line
def _train_cli(monkeypatch: pytest.MonkeyPatch, out: Path, *argv: str) -> TrainConfig:
    """``python -m canetlib train --config synthetic-1shot --out OUT *argv`` with the trainer
    replaced: the config it would train."""
    import canetlib.training.recipe

    got: dict[str, TrainConfig] = {}

    def fake_train(cfg: TrainConfig, out: Path, **kwargs: Any) -> Any:
        got["cfg"] = cfg
        return types.SimpleNamespace(losses=[], step=0, total_steps=0, out=Path(out))

    monkeypatch.setattr(canetlib.training.recipe, "train", fake_train)
    assert main(["train", "--config", "synthetic-1shot", "--out", str(out), *argv]) == 0
    return got["cfg"]


def test_train_takes_set_and_field_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = _train_cli(monkeypatch, tmp_path, "--set", "lr=0.1", "--set", "width=8", "--lr", "0.5",
                     "--fold", "2", "--blocks", "block2,block3", "--cache-images=false")
    assert (cfg.lr, cfg.width, cfg.fold, cfg.cache_images) == (0.5, 8, 2, False)  # flags win
    assert cfg.blocks == ("block2", "block3")
    cfg = _train_cli(monkeypatch, tmp_path, "--backbone-widths", "8,16,16,16", "--iterations", "0")
    assert cfg.backbone_widths == (8, 16, 16, 16) and cfg.iterations == 0


@pytest.mark.parametrize("argv, message", [
    (["--colour", "red"], "error: Unrecognized options: --colour"),
    (["--lr", "fast"], "error: bad value for --lr: could not convert string to float: 'fast'"),
    (["--set", "lr=fast"], "error: bad value 'fast' for lr"),
    (["--set", "colour=red"], "error: unknown setting 'colour' for TrainConfig; valid keys: "),
])
def test_train_refuses_bad_fields_in_one_line(argv: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", "synthetic-1shot", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_other_commands_still_refuse_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--lr", "0.5"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --lr 0.5" in capsys.readouterr().err


def test_resume_command_repeats_the_field_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import canetlib.training.recipe

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(canetlib.training.recipe, "train", interrupted)
    (tmp_path / "last.pt").write_bytes(b"")
    argv = ["train", "--config", "synthetic-1shot", "--out", str(tmp_path), "--set", "width=8",
            "--lr", "0.5", "--blocks", "block2", "block3"]
    assert main(argv) == 130
    assert ("--set width=8 --lr 0.5 --blocks block2 block3 --resume"
            in capsys.readouterr().err)


@pytest.mark.parametrize("config, present, absent", [
    (None, "--lr FLOAT learning rate (default: 0.0025)", "--warmup"),
    ("synthetic-1shot", "--lr FLOAT learning rate (default: 0.001)", "--warmup"),
    ("synthetic-pretrain", "--warmup INT steps of linear lr warmup (default: 50)", "--width"),
])
def test_train_help_lists_the_fields(config: str | None, present: str, absent: str,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as exc:
        main(["train", *(["--config", config] if config else []), "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--set KEY=VALUE override a config field" in out  # argparse's options first
    assert out.index("--no-progress") < out.index("fields of ") < out.index(present)
    assert f"fields of {config or 'pascal-1shot'}," in out and absent not in out
