"""The CANet model: parity with the reference, shapes, freezing, fusions."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import make_episode, tiny_canet

from canetlib import FUSIONS, CANet, masked_average_pooling
from canetlib.model.backbone import BACKBONES


def tiny(**kw: object) -> CANet:
    return tiny_canet(seed=None, **{"width": 32, "backbone_widths": (8, 16, 24, 32), **kw})


def paper_model(**kw: object) -> CANet:
    """The paper's ResNet-50 CANet on the meta device: real architecture and parameter
    shapes, no weights initialised and no arithmetic (shapes only, in well under a second)."""
    with torch.device("meta"):
        return CANet(pretrained=False, **kw).eval()  # type: ignore[arg-type]


def meta_episode(size: int, shots: int = 1) -> tuple[torch.Tensor, ...]:
    return tuple(x.to("meta") for x in make_episode(size=size, shots=shots))


def test_parameter_parity_with_reference() -> None:
    """The full-size model's counts, without a forward pass (or even initialised weights)."""
    model = paper_model()
    assert next(model.parameters()).is_meta
    frozen, trainable = model.parameter_counts()
    assert frozen == 8_543_296
    assert trainable == 10_494_466


def test_attention_adds_only_the_attention_branch() -> None:
    base = paper_model().parameter_counts()
    att = paper_model(fusion="attention").parameter_counts()
    assert att[0] == base[0]
    # conv 512->256 (3x3) + conv 256->1 (3x3), with biases
    assert att[1] - base[1] == 512 * 256 * 9 + 256 + 256 * 9 + 1


def test_shapes_at_paper_size() -> None:
    """321 px in, the 41 x 41 grid out: the paper's ResNet-50 model traced on the meta
    device (shapes only), and a reduced-width model computing real values."""
    model = paper_model(fusion="attention")
    query, supports, masks = meta_episode(321, shots=2)
    out = model(query, supports, masks, check=False)  # meta tensors hold no values to check
    assert len(out.logits) == 5  # CANet-Init + 4 refinements
    assert all(lg.shape == (1, 2, 41, 41) for lg in out.logits)
    assert out.attention is not None and out.attention.shape == (1, 2)
    feats = model.backbone(query)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "block2": (1, 512, 41, 41), "block3": (1, 1024, 41, 41)}
    assert model.extract(query).shape == (1, 256, 41, 41)

    small = tiny().eval()  # same strides and dilations, narrow layers
    query, supports, masks = make_episode(size=321)
    out = small(query, supports, masks)
    assert len(out.logits) == 5
    assert all(lg.shape == (1, 2, 41, 41) and torch.isfinite(lg).all() for lg in out.logits)
    assert small.extract(query).shape == (1, 32, 41, 41)
    probs = out.probabilities(size=(321, 321))[-1]  # back at the query's size
    assert probs.shape == (1, 2, 321, 321)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 321, 321))


def test_every_block3_unit_is_dilated_as_in_the_reference() -> None:
    """All six layer3 units (the first one too) dilate their 3x3 conv by 2, layer4's by 4,
    with stride 1 and same-size padding; torchvision alone leaves each first unit undilated."""
    backbone = paper_model(blocks=("block2", "block3", "block4")).backbone
    for layer, d in ((backbone.layer3, 2), (backbone.layer4, 4)):
        convs = [unit.conv2 for unit in layer]
        assert [c.dilation for c in convs] == [(d, d)] * len(convs)
        assert [c.padding for c in convs] == [(d, d)] * len(convs)
        assert [c.stride for c in convs] == [(1, 1)] * len(convs)
    assert len(backbone.layer3) == 6
    assert backbone.layer3[0].downsample[0].stride == (1, 1)  # no stride left in block3


@pytest.mark.parametrize("blocks", [("block2",), ("block3",), ("block4",), ("block2", "block3", "block4")])
def test_block_choices_share_the_grid(blocks: tuple[str, ...]) -> None:
    model = paper_model(blocks=blocks)
    channels = {"block2": 512, "block3": 1024, "block4": 2048}
    query, supports, masks = meta_episode(321)
    feats = model.backbone(query)
    assert all(v.shape[-2:] == (41, 41) for v in feats.values())  # dilated, not strided
    for b in blocks:
        assert feats[b].shape == (1, channels[b], 41, 41)
    assert (model.backbone.layer4 is None) == ("block4" not in blocks)  # built only if asked
    out = model(query, supports, masks, iterations=0, check=False)
    assert out.final.shape == (1, 2, 41, 41)


def test_vgg16_variant_runs() -> None:
    model = CANet(pretrained=False, backbone="vgg16", blocks=("block2", "block3", "block4")).eval()
    query, supports, masks = make_episode(size=64)
    out = model(query, supports, masks, iterations=1)
    assert out.final.shape == (1, 2, 8, 8)


def test_unknown_backbone_and_fusion_are_named() -> None:
    with pytest.raises(ValueError, match="backbone"):
        CANet(pretrained=False, backbone="resnet9000")
    with pytest.raises(ValueError, match="fusion"):
        CANet(pretrained=False, fusion="sum")
    assert "resnet50" in BACKBONES


def test_masked_average_pooling_by_hand() -> None:
    feats = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    mask = torch.zeros(2, 4, 4)
    mask[0, 1:3, 1:3] = 1
    mask[1, 0, :] = 1
    got = masked_average_pooling(feats, mask)
    expected = torch.stack([
        feats[0, :, 1:3, 1:3].sum(dim=(1, 2)) / (4 + 5e-4),
        feats[1, :, 0, :].sum(dim=1) / (4 + 5e-4),
    ])
    torch.testing.assert_close(got, expected)


def test_masked_average_pooling_resizes_mask_bilinearly() -> None:
    feats = torch.ones(1, 2, 5, 5)
    mask = torch.ones(1, 20, 20)
    torch.testing.assert_close(masked_average_pooling(feats, mask),
                               torch.full((1, 2), 25 / (25 + 5e-4)))


def test_backbone_frozen_and_batchnorm_stats_fixed_after_step() -> None:
    model = CANet(pretrained=False).train()
    frozen_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.iom.classifier.weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    query, supports, masks = make_episode(batch=2, size=65)
    out = model(query, supports, masks)
    target = torch.randint(0, 2, (2, 9, 9))
    loss = torch.nn.functional.cross_entropy(out.final, target)
    loss.backward()
    opt.step()
    assert not model.backbone.training
    assert all(p.grad is None for p in model.backbone.parameters())
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, frozen_before[k]), k
    assert not torch.equal(model.iom.classifier.weight, head_before)


def test_train_mode_keeps_backbone_in_eval() -> None:
    model = tiny().train()
    assert model.training and not model.backbone.training
    assert all(not m.training for m in model.backbone.modules())


def test_eval_forward_is_deterministic() -> None:
    model = tiny().eval()
    query, supports, masks = make_episode(batch=2)
    a = model(query, supports, masks).logits
    b = model(query, supports, masks).logits
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("shots", [1, 5])
def test_every_fusion_runs(fusion: str | None, shots: int) -> None:
    model = tiny(fusion=fusion).eval()
    query, supports, masks = make_episode(batch=2, shots=shots)
    if fusion is None and shots > 1:
        with pytest.raises(ValueError, match="1-shot"):
            model(query, supports, masks)
        return
    out = model(query, supports, masks, iterations=2)
    assert len(out.logits) == 3
    assert all(lg.shape == (2, 2, 9, 9) and torch.isfinite(lg).all() for lg in out.logits)
    if fusion == "attention":
        assert out.attention is not None and out.attention.shape == (2, shots)
    probs = out.probabilities(size=(65, 65))[-1]
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 65, 65))


def test_attention_weights_sum_to_one_and_are_permutation_equivariant() -> None:
    model = tiny(fusion="attention").eval()
    # make the weights non-uniform: the default init gives near-equal lambdas
    torch.nn.init.normal_(model.attention.branch[2].weight, 0, 0.5)
    query, supports, masks = make_episode(batch=2, shots=4)
    out = model(query, supports, masks)
    torch.testing.assert_close(out.attention.sum(1), torch.ones(2))
    assert out.attention.std() > 1e-4
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = model(query, supports[:, perm], masks[:, perm])
    torch.testing.assert_close(shuffled.attention, out.attention[:, perm])
    torch.testing.assert_close(shuffled.final, out.final, rtol=1e-4, atol=1e-5)


def test_similar_pooling_keeps_the_weights_and_averages_the_most_similar_cells() -> None:
    from canetlib.model.modules import _pool_where_similar

    mean = tiny(fusion="attention").eval()
    similar = tiny(fusion="attention", attention_pool="similar").eval()
    assert similar.config.attention_pool == "similar"
    similar.load_state_dict(mean.state_dict())  # the same parameters: one option, no new ones
    torch.nn.init.normal_(similar.attention.branch[2].weight, 0, 0.5)
    query, supports, masks = make_episode(batch=2, shots=4)
    out = similar(query, supports, masks)
    torch.testing.assert_close(out.attention.sum(1), torch.ones(2))
    perm = torch.tensor([3, 1, 0, 2])
    torch.testing.assert_close(similar(query, supports[:, perm], masks[:, perm]).attention,
                               out.attention[:, perm])
    scores = torch.arange(16.0).view(1, 1, 4, 4)
    sim = torch.zeros(1, 8, 8)
    sim[0, 0, 0], sim[0, 0, 2] = 1.0, 0.9  # max-pooled: cells (0, 0) and (0, 1) of the 4 x 4 grid
    assert _pool_where_similar(scores, sim).item() == 0.5  # round(10% of 16) = 2 cells: 0 and 1
    with pytest.raises(ValueError, match="needs the query-prototype similarity map"):
        _pool_where_similar(scores, None)
    with pytest.raises(ValueError, match="attention_pool must be one of"):
        tiny(fusion="attention", attention_pool="max")


def test_mask_fusions_combine_single_shot_predictions() -> None:
    query, supports, masks = make_episode(batch=1, shots=3)
    for fusion in ("mask-or", "mask-avg"):
        model = tiny(fusion=fusion).eval()
        fused = model(query, supports, masks, iterations=1).probabilities()[-1][:, 1]
        each = torch.stack([
            model(query, supports[:, i:i + 1], masks[:, i:i + 1], iterations=1)
            .probabilities()[-1][:, 1] for i in range(3)])
        # Mask-OR: foreground where any support says so = max of the probabilities
        expected = each.amax(0) if fusion == "mask-or" else each.mean(0)
        torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-5)


def test_feature_avg_equals_uniform_attention() -> None:
    avg = tiny(fusion="feature-avg").eval()
    att = tiny(fusion="attention").eval()
    att.load_state_dict(avg.state_dict(), strict=False)
    torch.nn.init.zeros_(att.attention.branch[2].weight)  # equal lambdas -> uniform weights
    torch.nn.init.zeros_(att.attention.branch[2].bias)
    query, supports, masks = make_episode(shots=3)
    torch.testing.assert_close(avg(query, supports, masks).final,
                               att(query, supports, masks).final)


def test_refine_reuses_cached_features() -> None:
    model = tiny().eval()
    query, supports, masks = make_episode()
    with torch.inference_mode():
        feats = model.encode(query, supports, masks)
        short = model.refine(feats, 1)
        long = model.refine(feats, 3)
        full = model(query, supports, masks, iterations=3)
    for a, b in zip(short.logits, long.logits[:2]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(long.final, full.final)


def test_cached_input_part_equals_the_plain_iom_pass() -> None:
    from canetlib.training.start import kaiming_head

    torch.manual_seed(0)
    model = tiny().eval()
    kaiming_head(model)  # N(0, 0.01) would make every pass nearly zero
    query, supports, masks = make_episode()
    with torch.inference_mode():
        feats = model.encode(query, supports, masks)
        x = feats.features
        y = x.new_zeros(x.shape[0], 2, *x.shape[-2:])
        plain = []
        for _ in range(4):
            plain.append(model.iom(x, y))
            y = torch.softmax(plain[-1].float(), dim=1)
        cached = model.refine(feats, 3).logits
    assert (plain[1] - plain[0]).abs().max() > 1e-3  # the history matters
    for a, b in zip(plain, cached):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_backbone_runs_once_per_image() -> None:
    model = tiny(fusion="attention").eval()
    calls: list[int] = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    query, supports, masks = make_episode(batch=2, shots=3)
    model(query, supports, masks, iterations=4)
    assert calls == [2 + 2 * 3]  # one batched pass: 2 queries + 6 supports
    calls.clear()
    query, supports, masks = make_episode(batch=2, shots=3, size=65, support_size=49)
    model(query, supports, masks, iterations=4)
    assert sorted(calls) == [2, 6]


def test_history_input_changes_first_pass() -> None:
    model = tiny().eval()
    query, supports, masks = make_episode()
    empty = model(query, supports, masks, iterations=0).final
    hist = torch.zeros(1, 2, 9, 9)
    hist[:, 1] = 1
    torch.nn.init.normal_(model.iom.history.body[1].weight, 0, 0.5)
    assert not torch.allclose(model(query, supports, masks, iterations=0, history=hist).final,
                              model(query, supports, masks, iterations=0).final)
    assert empty.shape == hist.shape


def test_predict_multiscale_and_size() -> None:
    model = tiny().eval()
    query, supports, masks = make_episode(size=65)
    single = model.predict(query, supports, masks, iterations=2, size=(70, 80))
    multi = model.predict(query, supports, masks, iterations=2, scales=(0.7, 1.0, 1.3))
    assert single.probs[-1].shape == (1, 2, 70, 80)
    assert len(multi.probs) == 3 and multi.final.shape == (1, 65, 65)
    torch.testing.assert_close(multi.probs[-1].sum(1), torch.ones(1, 65, 65))
    each = [model.predict(query, supports, masks, iterations=2, scales=(s,)).probs[-1]
            for s in (0.7, 1.0, 1.3)]
    torch.testing.assert_close(multi.probs[-1], sum(each) / 3)
    assert each[0].shape == (1, 2, 65, 65)


def test_pretrained_weights_error_explains_offline_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import ResNet50_Weights

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(ResNet50_Weights.IMAGENET1K_V1.__class__, "get_state_dict", no_network)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        CANet(pretrained=True)


def test_tiny_backbone_refuses_imagenet_weights() -> None:
    with pytest.raises(ValueError, match="resnet-tiny"):
        CANet(pretrained=True, backbone="resnet-tiny")


def test_channels_last_matches_contiguous() -> None:
    model = tiny().eval()
    query, supports, masks = make_episode()
    ref = model(query, supports, masks).final
    model.use_channels_last()
    torch.testing.assert_close(model(query, supports, masks).final, ref, rtol=1e-4, atol=1e-5)


def test_relational_pairing_shows_the_head_only_relations() -> None:
    from canetlib.model.modules import DenseComparison

    q = torch.randn(2, 4, 3, 3)
    p = torch.randn(2, 4)
    paired = DenseComparison.pair(q, p, "relational")
    tiled = p[:, :, None, None]
    assert torch.equal(paired[:, :4], q * tiled)
    assert torch.equal(paired[:, 4:], (q - tiled).abs())
    assert torch.equal(DenseComparison.pair(q, p)[:, :4], q)  # the paper's concat
    with pytest.raises(ValueError, match="pairing must be one of"):
        DenseComparison(8, 0.0, "product")


def test_normalised_encoder_ignores_feature_magnitude() -> None:
    from canetlib.model.modules import FeatureEncoder

    enc = FeatureEncoder(6, 8, dropout=0.0, normalise=True).eval()
    a, b = torch.randn(1, 2, 5, 5), torch.randn(1, 4, 5, 5)
    scale = torch.rand(1, 1, 5, 5) + 0.5  # a positive factor per location
    assert torch.allclose(enc([a, b]), enc([a * scale * 3, b * scale]), atol=1e-5)
    plain = FeatureEncoder(6, 8, dropout=0.0).eval()
    assert not torch.allclose(plain([a, b]), plain([a * 3, b]), atol=1e-3)


def test_options_survive_a_checkpoint_and_old_configs_load_as_the_paper() -> None:
    from canetlib.model.checkpoint import build_model

    model = tiny_canet(seed=None, normalise=True, pairing="relational")
    again = build_model(model.config.to_dict())
    assert again.encoder.normalise and again.comparison.pairing == "relational"
    old = {k: v for k, v in model.config.to_dict().items() if k not in ("normalise", "pairing")}
    paper = build_model(old)
    assert not paper.encoder.normalise and paper.comparison.pairing == "concat"


# --------------------------------------------------------------------------- one model config
def test_canet_config_is_the_one_description_of_a_model() -> None:
    from canetlib import CANetConfig
    from canetlib.model import MODEL_FIELDS, PAPER_MODEL

    # CANet's keyword defaults are the config's (the book reads __kwdefaults__)
    defaults = CANet.__init__.__kwdefaults__
    assert {name: defaults[name] for name in MODEL_FIELDS} == PAPER_MODEL.as_kwargs()
    cfg = CANetConfig(backbone="resnet-tiny", width=16, backbone_widths=[8, 8, 16, 16],
                      fusion="mask-avg", normalise=True, pairing="relational")
    assert cfg.backbone_widths == (8, 8, 16, 16) and cfg.blocks == ("block2", "block3")
    model = CANet.from_config(cfg, pretrained=False)
    assert model.config == cfg and model.fusion == "mask-avg"
    assert model.config.to_dict()["backbone_widths"] == [8, 8, 16, 16]
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.width = 99  # type: ignore[misc]  # a model's config cannot drift from it
    kw = CANet(pretrained=False, backbone="resnet-tiny", width=16, backbone_widths=(8, 8, 16, 16),
               fusion="mask-avg", normalise=True, pairing="relational")
    assert kw.config == cfg
    assert CANetConfig.from_dict(cfg.to_dict()) == cfg
    assert CANetConfig(backbone_widths=()).backbone_widths is None


@pytest.mark.parametrize("kw, message", [
    ({"backbone": "resnet9000"}, "backbone must be one of"),
    ({"fusion": "sum"}, "fusion must be one of"),
    ({"blocks": ()}, "at least one backbone block"),
    ({"blocks": ("block5",)}, "unknown block 'block5'"),
    ({"width": 0}, "width must be >= 1"),
    ({"iterations": -1}, "iterations must be an integer >= 0"),
    ({"dropout": 1.5}, r"dropout must be in \[0, 1\]"),
    ({"pairing": "product"}, "pairing must be one of"),
    ({"backbone": "resnet-tiny", "backbone_widths": (8, 8)}, "resnet-tiny needs 4 widths"),
])
def test_canet_config_validates_in_one_place(kw: dict[str, object], message: str) -> None:
    from canetlib import CANetConfig

    with pytest.raises(ValueError, match=message):
        CANetConfig(**kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        CANet(pretrained=False, **kw)  # type: ignore[arg-type]


def test_checkpoint_model_configs_are_read_by_the_config() -> None:
    from canetlib import CANetConfig

    stored = CANetConfig(backbone="resnet-tiny").to_dict()
    old = {k: v for k, v in stored.items() if k not in ("normalise", "pairing")}
    assert CANetConfig.from_dict(old) == CANetConfig(backbone="resnet-tiny")
    with pytest.raises(ValueError, match="x.pt: model_config lacks 'width'; a CANet checkpoint "
                                         "needs backbone, blocks, fusion, width"):
        CANetConfig.from_dict({k: v for k, v in stored.items() if k != "width"}, "x.pt")
    with pytest.raises(ValueError, match=r"x.pt: model_config has unknown keys \['colour'\]"):
        CANetConfig.from_dict({**stored, "colour": "red"}, "x.pt")
    with pytest.raises(ValueError, match="x.pt: fusion must be one of"):
        CANetConfig.from_dict({**stored, "fusion": "sum"}, "x.pt")


def test_every_shipped_checkpoint_loads_through_the_config() -> None:
    from canetlib import CANetConfig
    from canetlib.model import checkpoint

    names = [n for n in checkpoint.shipped_names()
             if checkpoint.load(n).get("kind") != checkpoint.BACKBONE_KIND]
    assert names, "no shipped model checkpoint"
    for name in names:
        stored = checkpoint.load(name)["model_config"]
        model = checkpoint.load_model(name)
        assert model.config == CANetConfig.from_dict(stored)
        assert {k: model.config.to_dict()[k] for k in stored} == stored  # older files: a subset
        assert checkpoint.model_payload(model)["model_config"] == model.config.to_dict()


def test_use_fusion_switches_how_supports_combine() -> None:
    from helpers import tiny_model

    model = tiny_model()
    assert model.fusion is None
    q, s, m = torch.randn(1, 3, 40, 40), torch.randn(1, 3, 3, 40, 40), torch.ones(1, 3, 40, 40)
    with pytest.raises(ValueError, match="1-shot CANet"):
        model(q, s, m, iterations=0)
    model.eval().use_fusion("mask-avg")
    assert model.fusion == "mask-avg" and model.config.fusion == "mask-avg"
    avg = model(q, s, m, iterations=0).final
    model.use_fusion("mask-or")
    assert not torch.allclose(model(q, s, m, iterations=0).final, avg)
    with pytest.raises(ValueError, match="no attention branch"):
        model.use_fusion("attention")
    with pytest.raises(ValueError):
        model.use_fusion("median")
