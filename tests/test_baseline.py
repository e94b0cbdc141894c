"""The training-free prototype baseline and the all-objects baseline (canetlib.model.baseline)."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from helpers import tiny_canet
from torch import Tensor, nn

from canetlib.evaluation import evaluate, fit_threshold
from canetlib.model.baseline import PrototypeMatcher


class ColourBackbone(nn.Module):
    """Features = the pixel colours on a 1/8 grid: a backbone whose answer is known."""

    channels: ClassVar[dict[str, int]] = {"block2": 3, "block3": 3}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        f = nn.functional.avg_pool2d(x, 8)
        return {"block2": f, "block3": f}


def two_colour_episode(size: int = 64) -> dict[str, Tensor]:
    """Query: a red square (the class) and a blue square; support: a red square."""
    red, blue, grey = torch.tensor([2.0, -1, -1]), torch.tensor([-1.0, -1, 2]), torch.tensor(
        [0.1, 0.1, 0.1])
    q = grey[:, None, None].repeat(1, size, size)
    q[:, 8:24, 8:24] = red[:, None, None]
    q[:, 40:56, 40:56] = blue[:, None, None]
    target = torch.zeros(size, size, dtype=torch.long)
    target[8:24, 8:24] = 1
    s = grey[:, None, None].repeat(1, size, size)
    s[:, 32:56, 16:40] = red[:, None, None]
    smask = torch.zeros(size, size, dtype=torch.long)
    smask[32:56, 16:40] = 1
    every = target.clone()
    every[40:56, 40:56] = 1
    return {"query_image": q, "query_mask": target, "query_all_objects": every,
            "support_images": s[None], "support_masks": smask[None], "class_id": 1, "index": 0}


class Episodes(torch.utils.data.Dataset):
    classes: ClassVar[list[int]] = [1]

    def __init__(self, n: int = 2) -> None:
        self.items = [two_colour_episode() for _ in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.items[i]


def test_matcher_finds_the_support_colour_and_not_the_other() -> None:
    matcher = PrototypeMatcher(ColourBackbone(), threshold=0.5)
    item = two_colour_episode()
    out = matcher(item["query_image"][None], item["support_images"][None],
                  item["support_masks"][None])
    fg = out.final[0, 1] > out.final[0, 0]  # (8, 8) grid
    assert fg[1:3, 1:3].all()  # the red square
    assert not fg[5:7, 5:7].any()  # the blue square
    assert not fg[0, 4:].any()  # background


def test_evaluator_scores_matcher_and_all_objects_on_the_same_episodes() -> None:
    matcher = PrototypeMatcher(ColourBackbone(), threshold=0.5)
    res = evaluate(matcher, Episodes(), iterations=0, input_size="native", device="cpu")
    # the red square only, blurred by upsampling the 8 x 8 grid: well above marking both
    assert res["miou"] > 60.0
    # marking both squares: intersection 16x16, union 2 x 16x16
    assert abs(res["all_objects_miou"] - 50.0) < 1e-6


def test_threshold_is_fitted_and_set() -> None:
    matcher = PrototypeMatcher(ColourBackbone(), threshold=0.99)
    fit = fit_threshold(matcher, Episodes(), thresholds=(-0.5, 0.0, 0.5, 0.99))
    assert matcher.threshold == fit["threshold"] == 0.5
    assert fit["miou"] == max(fit["curve"].values()) > fit["curve"][0.99] > fit["curve"][-0.5]


def test_from_model_shares_the_frozen_backbone() -> None:

    model = tiny_canet(seed=None, backbone_widths=(8, 8, 8, 8), width=8)
    matcher = PrototypeMatcher.from_model(model)
    assert matcher.backbone is model.backbone and matcher.blocks == model.blocks
    assert sum(p.numel() for p in matcher.parameters() if p.requires_grad) == 0


def test_area_resize_keeps_a_thin_support_object() -> None:
    feats = torch.arange(16.0).view(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.long)
    mask[0, 0, :, 9] = 1  # a 1-pixel line inside grid column 1, between bilinear samples
    area = PrototypeMatcher(ColourBackbone(), mask_resize="area").prototypes(feats, mask)
    assert torch.allclose(area.flatten(), feats[0, 0, :, 1].mean().view(1), atol=0.02)  # eps
    bilinear = PrototypeMatcher(ColourBackbone()).prototypes(feats, mask)
    assert float(bilinear.flatten()[0]) == 0.0  # bilinear sampling misses the line
    with pytest.raises(ValueError, match="bilinear' or 'area"):
        PrototypeMatcher(ColourBackbone(), mask_resize="nearest")


@pytest.mark.slow
def test_shipped_imagenet_canet_beats_both_baselines() -> None:
    """The shipped offline model compares: on seeded unseen-class episodes it beats the
    training-free matcher on its own frozen backbone and marking every object (a check on
    80 episodes, not the benchmark; data/results/imagenet-backbone has the full numbers)."""
    from canetlib.data import make_dataset
    from canetlib.evaluation import fit_prototype_baseline
    from canetlib.model.checkpoint import load_model

    model = load_model("synthetic-imagenet-1shot-fold0")
    matcher, fit = fit_prototype_baseline(model, "synthetic", fold=0, episodes=80)
    test = make_dataset("synthetic", fold=0, split="test", shots=1, episodes=80, seed=0)
    ours = evaluate(model, test, input_size=128, device="cpu")
    theirs = evaluate(matcher, test, input_size=128, device="cpu", iterations=0)
    assert ours["miou"] > theirs["miou"] + 5, (ours["miou"], theirs["miou"], fit["threshold"])
    assert ours["miou"] > ours["all_objects_miou"] + 10
