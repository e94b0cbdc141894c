"""Offline backbone pretraining (canetlib.training.pretrain) on classes disjoint from the 20."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_canet, tiny_pretrain_config

from canetlib.cli import main
from canetlib.model import checkpoint as ckpt_io
from canetlib.training.configs import get_config
from canetlib.training.pretrain import PretrainSamples, build_pool, load_backbone, pretrain


def test_pool_never_shows_a_benchmark_class() -> None:
    from canetlib.data import CLASS_GLYPHS

    pool = build_pool(tiny_pretrain_config())
    benchmark = {g for glyphs in CLASS_GLYPHS.values() for g in glyphs}
    assert pool.num_classes >= 100 and not set(pool.glyphs) & benchmark


def test_mosaic_samples_are_seeded_and_labelled() -> None:
    samples = PretrainSamples(build_pool(tiny_pretrain_config()), 1.0, 0)
    a, b = samples[(0, 5)], samples[(0, 5)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["pixels"], b["pixels"])
    assert a["image"].shape == (3, 64, 64) and a["pixels"].shape == (64, 64)
    assert len(set(a["pixels"].unique().tolist())) >= 3  # several objects per mosaic
    assert not torch.equal(samples[(1, 5)]["image"], a["image"])  # new tiles next epoch


def test_pretrain_then_load_into_canet(tmp_path: Path) -> None:
    res = pretrain(tiny_pretrain_config(), tmp_path, progress=False)
    assert res.step == 6 and res.backbone_path == tmp_path / "backbone.pt"
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,loss,lr,seconds" and len(rows) == 7
    model = tiny_canet(seed=None, backbone_widths=(8, 16, 16, 16))
    load_backbone(model, res.backbone_path)
    pretrained = res.net.backbone.state_dict()
    assert any(k.startswith("layer4.") for k in pretrained)  # block4 pretrained too (Table 3)
    mine = model.backbone.state_dict()
    assert not any(k.startswith("layer4.") for k in mine)  # block2 + block3 model: not built
    for k, v in mine.items():
        assert torch.equal(v, pretrained[k].cpu())
    assert not any(p.requires_grad for p in model.backbone.parameters())  # frozen
    # a trainer config pointing at it trains on top of it
    from canetlib.training.start import initial_model

    cfg = get_config("synthetic-1shot", ["backbone_widths=8,16,16,16", "width=16",
                                         f"backbone_checkpoint={res.backbone_path}"])
    built = initial_model(cfg)  # type: ignore[arg-type]
    assert torch.equal(built.backbone.layer1[0].conv1.weight,
                       res.net.backbone.layer1[0].conv1.weight.cpu())


def test_backbone_of_another_width_is_refused(tmp_path: Path) -> None:
    res = pretrain(tiny_pretrain_config("steps=1"), tmp_path, progress=False)
    model = tiny_canet(seed=None, backbone_widths=(8, 16, 32, 32))
    with pytest.raises(ValueError, match="backbone_widths is \\[8, 16, 16, 16\\]"):
        load_backbone(model, res.backbone_path)


def test_resume_is_exact(tmp_path: Path) -> None:
    whole = pretrain(tiny_pretrain_config(), tmp_path / "whole", progress=False)
    pretrain(tiny_pretrain_config(), tmp_path / "part", max_steps=3, progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        pretrain(tiny_pretrain_config(), tmp_path / "part", progress=False)
    with pytest.raises(ValueError, match="lr: checkpoint"):
        pretrain(tiny_pretrain_config("lr=0.1"), tmp_path / "part", resume=True, progress=False)
    resumed = pretrain(tiny_pretrain_config(), tmp_path / "part", resume=True, progress=False)
    assert resumed.step == whole.step == 6
    a, b = whole.net.state_dict(), resumed.net.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    a_bb = ckpt_io.load(tmp_path / "whole" / "backbone.pt")["model"]
    b_bb = ckpt_io.load(tmp_path / "part" / "backbone.pt")["model"]
    assert all(torch.equal(a_bb[k], b_bb[k]) for k in a_bb)


def test_cli_pretrain_rejects_fold(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--config", "synthetic-pretrain", "--fold", "1",
                 "--out", str(tmp_path)]) == 2
    assert "--fold does not apply" in capsys.readouterr().err
