"""The evaluator's fast forms give the same answers: folded BatchNorm, trimmed ASPP
branches, channels_last, counting in one pass, bf16 (close), thread settings."""

from __future__ import annotations

import pytest
import torch
from helpers import FakeEpisodes, tiny_model
from torch import nn
from torch.nn import functional as F

from canetlib import CANet
from canetlib.evaluation import evaluate
from canetlib.evaluation.metrics import counts
from canetlib.evaluation.speed import cpu_bf16_supported, inference_setup, resolve_precision
from canetlib.model.fold import fold_batchnorm, foldable_pairs
from canetlib.model.modules import ASPP
from canetlib.model.runtime import configure_threads


def _randomise_batchnorm(module: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


@pytest.mark.parametrize("backbone", ["resnet-tiny", "efficientnet-lite0"])
def test_folded_backbone_gives_the_same_features(backbone: str) -> None:
    kw = {"backbone_widths": (8, 8, 16, 16)} if backbone == "resnet-tiny" else {}
    model = CANet(pretrained=backbone == "efficientnet-lite0", backbone=backbone, width=16,
                  **kw).eval()
    _randomise_batchnorm(model.backbone)
    bn = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(foldable_pairs(model.backbone)) == len(bn) > 0
    folded = fold_batchnorm(model.backbone)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())  # untouched
    x = torch.randn(2, 3, 72, 72)
    with torch.inference_mode():
        a, b = model.backbone(x), folded(x)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-4), key


def test_a_wrong_pairing_is_caught() -> None:
    class Crossed(nn.Module):  # the BatchNorm is registered after conv b but follows conv a
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.bn(self.a(x)))

    net = Crossed().eval()
    _randomise_batchnorm(net)
    with pytest.raises(RuntimeError, match="pairing was wrong"):
        fold_batchnorm(net)


@pytest.mark.parametrize("grid", [(16, 16), (16, 24), (41, 41)])
def test_aspp_skips_only_taps_that_see_padding(grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    aspp = ASPP(8, dropout=0.0).eval()
    for m in aspp.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0, 0.3)
            nn.init.normal_(m.bias, 0, 0.1)
    x = torch.randn(2, 8, *grid, requires_grad=True)

    def full(inp: torch.Tensor) -> torch.Tensor:  # every branch as an ordinary conv
        pooled = aspp.image_pool(inp.mean(dim=(2, 3), keepdim=True))
        outs = [pooled.expand(-1, -1, *inp.shape[-2:])] + [b(inp) for b in aspp.branches]
        return aspp.fuse(torch.cat(outs, dim=1))

    ours, plain = aspp(x), full(x)
    assert torch.allclose(ours, plain, atol=1e-5)
    g_ours = torch.autograd.grad(ours.square().sum(), [x, aspp.branches[3][0].weight])
    g_plain = torch.autograd.grad(plain.square().sum(), [x, aspp.branches[3][0].weight])
    for a, b in zip(g_ours, g_plain):
        assert torch.allclose(a, b, atol=1e-4)


def test_counts_match_the_per_class_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    fg = torch.rand(3, 4, 9, 11, generator=gen) > 0.5
    target = torch.randint(0, 2, (4, 9, 11), generator=gen)
    target[:, :2] = 255
    inter, union = counts(fg, target)
    valid = target != 255
    for t in range(3):
        for b in range(4):
            for cls in (0, 1):
                p = (fg[t, b] == bool(cls)) & valid[b]
                g = (target[b] == cls) & valid[b]
                assert int(inter[t, b, cls]) == int((p & g).sum())
                assert int(union[t, b, cls]) == int((p | g).sum())


def test_fast_forms_give_the_plain_scores() -> None:
    model, data = tiny_model(), FakeEpisodes(6)
    plain = evaluate(model, data, iterations=2, input_size="native", channels_last=False,
                     fold_bn=False)
    fast = evaluate(model, data, iterations=2, input_size="native")
    assert fast.miou_per_iteration == pytest.approx(plain.miou_per_iteration, abs=1e-6)
    assert fast.settings["channels_last"] and fast.settings["fold_bn"]
    assert not model._channels_last and any(  # the model is given back as it was
        isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())
    t = fast.timings
    assert t is not None and t["total"] >= t["backbone"] + t["head"] + t["metrics"] > 0


@pytest.mark.skipif(not cpu_bf16_supported(), reason="no native bf16 on this CPU")
def test_bf16_is_close_and_labelled() -> None:
    model, data = tiny_model(), FakeEpisodes(6)
    plain = evaluate(model, data, iterations=1, input_size="native")
    bf16 = evaluate(model, data, iterations=1, input_size="native", bf16=True)
    assert bf16.settings["precision"] == "bf16" and plain.settings["precision"] == "fp32"
    assert bf16.miou == pytest.approx(plain.miou, abs=5.0)


def test_precision_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="on CUDA use amp"):
        resolve_precision(torch.device("cuda"), None, True)
    assert resolve_precision(torch.device("cpu"), None, False) == "fp32"


def test_setup_restores_the_model_after_an_error() -> None:
    model = tiny_model()
    backbone = model.backbone
    model.train()
    with pytest.raises(KeyError), inference_setup(model, torch.device("cpu"), "fp32"):
        assert model.backbone is not backbone and not model.training
        raise KeyError("boom")
    assert model.backbone is backbone and model.training and not model._channels_last


def test_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert configure_threads(None) == 1  # the measured default
        with pytest.raises(ValueError, match="threads must be >= 1"):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_interpolating_the_margin_is_the_argmax_of_the_interpolation() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 2, 8, 8, generator=gen)
    up = F.interpolate(maps, size=(29, 31), mode="bilinear", align_corners=True)
    margin = F.interpolate(maps[:, 1:] - maps[:, :1], size=(29, 31), mode="bilinear",
                           align_corners=True)
    agree = (up.argmax(1) == (margin[:, 0] > 0).long()).float().mean()
    assert agree > 0.999  # float rounding may flip an exact tie


def test_cpu_backbone_chunks_give_the_batch_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from canetlib.model import canet

    model = tiny_model().eval()
    x = torch.randn(5, 3, 48, 48)
    with torch.inference_mode():
        whole = model.extract(x)
        monkeypatch.setattr(canet, "CPU_CHUNK_PIXELS", 2 * 48 * 48)  # chunks of 2, 2, 1
        calls: list[int] = []
        handle = model.backbone.register_forward_hook(
            lambda _m, args, _o: calls.append(args[0].shape[0]))
        chunked = model.extract(x)
        handle.remove()
    assert calls == [2, 2, 1]
    assert torch.allclose(whole, chunked, atol=1e-6)


@pytest.mark.parametrize("fusion", ["mask-avg", "feature-avg"])
def test_cpu_head_chunks_give_the_batch_result(fusion: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from canetlib.model import canet

    model = tiny_model(fusion=fusion).eval()
    q, s = torch.randn(5, 3, 40, 40), torch.randn(5, 3, 3, 40, 40)
    m = torch.zeros(5, 3, 40, 40, dtype=torch.long)
    m[..., 10:30, 10:30] = 1
    with torch.inference_mode():
        feats = model.encode(q, s, m)
        history = torch.rand(5, 2, *feats.features.shape[-2:])
        whole = model.refine(feats, 2, history)
        monkeypatch.setattr(canet, "CPU_HEAD_CHUNK", 6)  # 2 episodes (6 chains) at a time
        calls: list[int] = []
        handle = model.iom.register_forward_hook(lambda _m, a, _o: calls.append(a[0].shape[0]))
        chunked = model.refine(feats, 2, history)
        handle.remove()
    groups = 3 if fusion == "mask-avg" else 1
    assert max(calls) <= 6 and sum(calls) == 3 * 5 * groups  # 3 passes over every chain
    for a, b in zip(whole.logits, chunked.logits):
        assert torch.allclose(a, b, atol=1e-6)


def test_more_supports_than_a_head_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    from canetlib.model import canet

    monkeypatch.setattr(canet, "CPU_HEAD_CHUNK", 2)  # fewer than the 3 chains of an episode
    model = tiny_model(fusion="mask-or").eval()
    q, s = torch.randn(2, 3, 40, 40), torch.randn(2, 3, 3, 40, 40)
    m = torch.ones(2, 3, 40, 40, dtype=torch.long)
    m[..., :5, :] = 0
    with torch.inference_mode():
        out = model(q, s, m, iterations=1)
    assert out.final.shape[0] == 2
