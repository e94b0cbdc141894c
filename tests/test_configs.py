"""Named configs and ``--set key=value`` overrides (canetlib.configs)."""

from __future__ import annotations

import pytest

from canetlib.configs import (
    CONFIGS,
    PretrainConfig,
    TrainConfig,
    config_names,
    get_config,
    parse_value,
)


def test_required_names_exist() -> None:
    for name in ("synthetic-1shot", "synthetic-5shot", "pascal-1shot", "pascal-5shot",
                 "coco-1shot", "coco-5shot", "synthetic-pretrain"):
        assert name in config_names()
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


@pytest.mark.parametrize("item, message", [
    ("colour=red", "unknown setting 'colour'.*valid keys"),
    ("lr=fast", "bad value 'fast' for lr"),
    ("lr", "key=value"),
    ("channels_last=maybe", "bad value"),
    ("shots=5", "needs a k-shot fusion"),
    ("mask_dropout=1.5", "mask_dropout"),
    ("backbone=resnet18", "backbone must be one of"),
    ("validate_every=1", "val_fraction"),
    ("val_by=labels", "val_by must be one of"),
    ("val_by=classes;val_fraction=0.1", "leave it at 0"),
    ("val_classes=0;val_by=classes", "val_classes must be >= 1"),
])
def test_bad_overrides(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_config("pascal-1shot", item.split(";"))


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


def test_parse_value_none_only_for_optional() -> None:
    assert parse_value("none", int | None) is None
    with pytest.raises(ValueError):
        parse_value("none", int)


def test_model_fields_are_the_canet_config() -> None:
    import dataclasses

    from canetlib.model import MODEL_FIELDS, PAPER_MODEL, CANetConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(MODEL_FIELDS) <= names  # flat, so that --set width=64 works
    assert TrainConfig().model_config() == PAPER_MODEL
    cfg = get_config("synthetic-1shot", ["width=48", "fusion=mask-avg"])
    model = cfg.model_config()
    assert isinstance(model, CANetConfig) and model.width == 48 and model.fusion == "mask-avg"
    assert model.backbone_widths == cfg.backbone_widths and model.backbone == "resnet-tiny"
    assert cfg.model_kwargs() == {"pretrained": False, **model.as_kwargs()}
    with pytest.raises(ValueError, match="iterations must be an integer >= 0"):
        get_config("synthetic-1shot", ["iterations=-1"])
    with pytest.raises(ValueError, match="pairing must be one of"):
        get_config("synthetic-1shot", ["pairing=product"])


def test_settings_machinery_lives_in_its_own_module() -> None:
    from canetlib import settings

    assert parse_value is settings.parse_value
    assert issubclass(TrainConfig, settings.Settings)
    assert issubclass(PretrainConfig, settings.Settings)
    assert settings.parse_value("8,16", tuple[int, ...]) == (8, 16)
