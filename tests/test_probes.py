"""The departures tried by the probe scripts (``scripts/``, not part of the wheel) compute
what their pages say: the IOM's self-similarity input and the told-support attention term."""

from __future__ import annotations

import pytest
import torch
from helpers import load_script, tiny_model


def test_self_similarity_is_zero_for_the_empty_mask_and_one_on_the_marked_object() -> None:
    probe = load_script("head_probe")
    query = torch.randn(2, 8, 6, 6)
    query[:, :, :3] = torch.arange(1.0, 9.0)[None, :, None, None]  # the top rows look alike
    empty = torch.zeros(2, 2, 6, 6)
    assert torch.equal(probe.self_similarity(query, empty), torch.zeros(2, 1, 6, 6))
    marked = torch.zeros(2, 2, 6, 6)
    marked[:, 1, :2] = 1.0  # part of the alike rows marked: the rest of them matches fully
    sim = probe.self_similarity(query, marked)
    assert sim.shape == (2, 1, 6, 6)
    assert torch.allclose(sim[:, 0, :3], torch.ones(2, 3, 6), atol=1e-5)
    assert float(sim[:, 0, 3:].abs().max()) < 1.0


def test_the_self_prototype_iom_takes_one_more_channel_and_runs_every_pass() -> None:
    probe = load_script("head_probe")
    model = tiny_model()
    before = model.iom.history.body[1].in_channels
    probe.add_self_similarity_input(model, kaiming=True)
    assert model.iom.history.body[1].in_channels == before + 1
    x = torch.randn(3, model.config.width, 5, 5)
    query = torch.randn(3, model.config.width, 5, 5)
    outs = probe.refine_self(model, query, x, 2, None)
    assert len(outs) == 3 and all(o.shape == (3, 2, 5, 5) for o in outs)
    assert not torch.equal(outs[0], outs[1])  # the refinements see the previous mask


def _attention_step(k: int = 3) -> tuple[object, torch.Tensor, torch.Tensor]:
    model = tiny_model("attention")
    compared = torch.randn(2 * k, model.config.width, 4, 4)
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:12, 4:12] = 1
    target[:, 0] = 255
    return model, compared, target


def test_support_losses_are_per_episode_and_support_without_gradient() -> None:
    probe = load_script("attention_supervision_probe")
    model, compared, target = _attention_step()
    compared.requires_grad_(True)
    losses = probe.support_losses(model, compared, target, 3)
    assert losses.shape == (2, 3) and not losses.requires_grad
    assert bool((losses > 0).all())
    assert model.iom.training == model.training  # the train/eval mode is given back


@pytest.mark.parametrize("agree", [True, False])
def test_the_told_term_is_zero_only_when_the_weights_match_the_target(agree: bool) -> None:
    probe = load_script("attention_supervision_probe")
    model, compared, target = _attention_step()
    goal = torch.softmax(-probe.support_losses(model, compared, target, 3) / 0.1, dim=1)
    seen = probe.Captured()
    seen.compared = compared
    seen.weights = goal if agree else torch.full_like(goal, 1 / 3)
    logits = torch.randn(2, 2, 4, 4)
    plain = probe.recipe.pixel_loss(logits, target)
    told = probe.told_loss(model, seen, 1.0, 0.1)(logits, target)
    if agree:
        assert torch.allclose(told, plain, atol=1e-6)
    else:
        assert float(told) > float(plain)
    assert seen.compared is None and seen.weights is None  # used once, then forgotten


def test_cut_history_moves_part_of_the_remembered_object_to_the_background() -> None:
    probe = load_script("head_probe")
    history = torch.zeros(3, 2, 8, 8)
    history[:2, 0] = 1.0
    history[0, :, 2:6, 2:7] = torch.tensor([0.0, 1.0])[:, None, None]
    cut = probe.cut_history(history, torch.Generator().manual_seed(0))
    assert torch.allclose(cut.sum(1), history.sum(1))  # still probabilities, same support
    removed = history[0, 1].sum() - cut[0, 1].sum()
    assert 0.3 * 0.3 * 20 - 1 <= float(removed) <= 0.7 * 0.7 * 20 + 4  # part, never all
    assert bool((cut[0, 1] <= history[0, 1]).all())  # only removed, nothing added
    assert torch.equal(cut[1:], history[1:])  # no object remembered, or no history: untouched


def test_the_drawing_probe_splits_ious_by_shared_drawing_per_class() -> None:
    probe = load_script("drawing_match")
    table = probe.split_by_drawing([1, 1, 1, 2], [True, False, True, False],
                                   [80.0, 20.0, 60.0, 50.0])
    assert table["aeroplane"] == {"episodes": 3, "same_drawing_percent": 66.7,
                                  "mean_iou_same_drawing": 70.0, "mean_iou_other_drawings": 20.0}
    assert table["bicycle"]["mean_iou_same_drawing"] is None
    with_init = probe.split_by_drawing([1, 1], [True, False], [80.0, 20.0], [70.0, 25.0])
    assert with_init["aeroplane"]["init_iou_same_drawing"] == 70.0
    assert with_init["aeroplane"]["init_iou_other_drawings"] == 25.0


def test_attention_by_drawing_counts_only_mixed_episodes() -> None:
    probe = load_script("attention_by_drawing")
    weights = [[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.4, 0.3, 0.3]]
    same = [[True, False, False], [True, True, False], [True, True, True]]  # the last: not mixed
    s = probe.weights_by_drawing(weights, same)
    assert s["mixed_episodes"] == 2
    assert s["mean_weight_same_drawing"] == pytest.approx((0.5 + 0.2 + 0.2) / 3, abs=1e-3)
    assert s["mean_weight_other_drawings"] == pytest.approx((0.3 + 0.2 + 0.6) / 3, abs=1e-3)
    assert s["top_weight_on_same_drawing_percent"] == 50.0  # episode 1 yes, episode 2 no
    assert s["same_drawing_share_of_supports_percent"] == 50.0
    assert probe.weights_by_drawing(weights[2:], same[2:]) == {"mixed_episodes": 0}
