"""The one inference path (canetlib.model.inference) against CANet.predict and by hand."""

from __future__ import annotations

import pytest
import torch
from helpers import make_episode, tiny_canet
from torch.nn import functional as F

from canetlib import CANet
from canetlib.model import MULTI_SCALE
from canetlib.model.baseline import PrototypeMatcher
from canetlib.model.cache import feature_cache
from canetlib.model.inference import episode_maps, iteration_maps

SCALES = [(1.0,), MULTI_SCALE]


def tiny(fusion: str | None = None) -> CANet:
    return tiny_canet(fusion=fusion).eval()


def by_hand(model: CANet, query, supports, masks, iterations, scales, size):
    """The multi-scale loop written out: per scale, probabilities at ``size``, averaged."""
    protos = model.prototypes(model.extract(supports.flatten(0, 1)), masks)
    total = None
    for s in scales:
        q = query if s == 1.0 else F.interpolate(query, scale_factor=s, mode="bilinear",
                                                 align_corners=True)
        probs = model.refine(model.compare(model.extract(q), protos), iterations) \
            .probabilities(size)
        total = probs if total is None else [a + p for a, p in zip(total, probs)]
    return [p / len(scales) for p in total]


@pytest.mark.parametrize("scales", SCALES)
@pytest.mark.parametrize("fusion,shots", [(None, 1), ("attention", 2), ("mask-or", 2)])
def test_shared_path_equals_predict_and_the_loop_by_hand(fusion, shots, scales) -> None:
    model = tiny(fusion)
    torch.manual_seed(1)
    query, supports, masks = make_episode(batch=2, shots=shots, size=48)
    pred = model.predict(query, supports, masks, iterations=2, scales=scales, size=(50, 45))
    with torch.inference_mode():
        out = iteration_maps(model, query, supports, masks, 2, scales, (50, 45))
        hand = by_hand(model, query, supports, masks, 2, scales, (50, 45))
    assert not out.logits and len(out.maps) == len(pred.probs) == 3
    for a, b, c in zip(out.maps, pred.probs, hand):
        assert a.shape == (2, 2, 50, 45)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)  # one scale: batched extract
    if fusion == "attention":
        torch.testing.assert_close(out.attention, pred.attention)
    else:
        assert out.attention is None and pred.attention is None


@pytest.mark.parametrize("scales", SCALES)
def test_logits_for_the_evaluator(scales) -> None:
    model = tiny()
    query, supports, masks = make_episode(batch=2, size=48)
    grid = (6, 6) if scales == (1.0,) else (48, 48)  # the feature grid / the query's size
    with torch.inference_mode():
        out = iteration_maps(model, query, supports, masks, 1, scales, logits=True)
    pred = model.predict(query, supports, masks, iterations=1, scales=scales, size=grid)
    assert out.logits == (scales == (1.0,)) and out.attention is None
    for a, p, q in zip(out.maps, out.probabilities(grid), pred.probs):
        assert a.shape[-2:] == grid
        torch.testing.assert_close(p, q)  # softmax of the logits = predict's probabilities
    for p in out.probabilities((40, 56)):
        torch.testing.assert_close(p.sum(1), torch.ones(2, 40, 56))
    one = out.episode(1)
    assert all(torch.equal(m[0], full[1]) for m, full in zip(one.maps, out.maps))


def test_episode_maps_restores_training_and_checks_scales() -> None:
    model = tiny().train()
    query, supports, masks = make_episode(size=48)
    out = episode_maps(model, query[0], supports[0], masks[0], 1, MULTI_SCALE)
    assert model.training and out.maps[-1].shape == (1, 2, 48, 48)
    torch.testing.assert_close(out.maps[-1], model.predict(query, supports, masks, iterations=1,
                                                           scales=MULTI_SCALE).probs[-1])
    with pytest.raises(ValueError, match="query at scale 0.1"):
        episode_maps(model, query[0], supports[0], masks[0], 1, (0.1,))


@pytest.mark.parametrize("scales", SCALES)
def test_feature_cache_and_prototype_matcher_use_the_same_path(scales) -> None:
    model = tiny()
    matcher = PrototypeMatcher.from_model(model, threshold=0.2).eval()  # the cache: eval only
    query, supports, masks = make_episode(batch=2, size=48)
    for net in (model, matcher):
        with torch.inference_mode():
            plain = iteration_maps(net, query, supports, masks, 1, scales, logits=True)
            with feature_cache(net) as cache:
                first = iteration_maps(net, query, supports, masks, 1, scales, logits=True)
                again = iteration_maps(net, query, supports, masks, 1, scales, logits=True)
        assert cache.misses > 0 and cache.hits >= cache.misses  # extract went through the cache
        for a, b, c in zip(plain.maps, first.maps, again.maps):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
            assert torch.equal(b, c)
