"""The evaluator's feature cache: same outputs, each distinct image through the backbone once."""

import pytest
import torch
from helpers import tiny_canet

from canetlib import CANet
from canetlib.data import SyntheticSource, make_dataset
from canetlib.evaluation import evaluate
from canetlib.model.baseline import PrototypeMatcher
from canetlib.model.cache import FeatureCache, feature_cache, image_digest


def tiny_model(fusion: str | None = None) -> CANet:
    return tiny_canet(dropout=0.0, fusion=fusion).eval()


def test_cached_extract_equals_plain_and_counts_images():
    model = tiny_model()
    a, b = torch.randn(2, 3, 32, 32)
    batch = torch.stack([a, b, a])
    with torch.inference_mode():
        plain = model.extract(batch)
        with feature_cache(model) as cache:
            assert model.extract_cache is cache
            first = model.extract(batch)
            again = model.extract(torch.stack([b, a]))
    assert torch.allclose(first, plain, atol=1e-5) and torch.allclose(again, plain[[1, 0]], atol=1e-5)
    assert (cache.misses, cache.hits, len(cache)) == (2, 3, 2)


def test_leaving_the_block_restores_the_uncached_path(monkeypatch):
    model = tiny_model()
    x = torch.randn(1, 3, 32, 32)
    computed = []
    compute = model.compute_features

    def counted(images):
        computed.append(len(images))
        return compute(images)

    monkeypatch.setattr(model, "compute_features", counted)
    with torch.inference_mode():
        with feature_cache(model) as cache:
            model.extract(x)
            model.extract(x)
            with feature_cache(model) as inner:  # nested: the outer cache serves
                model.extract(x)
            assert inner is cache and model.extract_cache is cache
        assert model.extract_cache is None
        assert (len(computed), cache.hits) == (1, 2)
        model.extract(x)
        model.extract(x)
    assert (len(computed), cache.hits) == (3, 2)  # computed every time, the cache untouched


def test_the_prototype_matcher_has_the_slot_and_other_models_are_refused():
    matcher = PrototypeMatcher.from_model(tiny_model()).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode(), feature_cache(matcher) as cache:
        assert torch.equal(matcher.extract(x), matcher.extract(x))
    assert (cache.misses, cache.hits) == (2, 2) and matcher.extract_cache is None
    refused = pytest.raises(TypeError, match="feature_cache needs a model with an extract_cache")
    with refused, feature_cache(torch.nn.Identity()):
        pass


def test_cache_passes_through_with_gradients_or_in_training_mode():
    model = tiny_model()
    with feature_cache(model) as cache:
        x = torch.randn(1, 3, 32, 32)
        out = model.extract(x)  # gradients enabled: the encoder must stay differentiable
        assert out.requires_grad and len(cache) == 0
        model.train()
        with torch.inference_mode():
            model.extract(x)
        assert len(cache) == 0


def test_least_recently_used_images_are_dropped_beyond_the_budget():
    calls = []

    def extract(images):
        calls.append(len(images))
        return images.mean(dim=1, keepdim=True)  # 1 x 4 x 4 floats = 64 bytes per image

    cache = FeatureCache(extract, max_bytes=128)
    x = torch.randn(3, 3, 4, 4)
    with torch.inference_mode():
        out = cache(x)  # three images, room for two: the result is still complete
        assert torch.equal(out, x.mean(dim=1, keepdim=True)) and len(cache) == 2
        cache(x[2:])
        cache(x[:1])  # image 0 was dropped first, so it is computed again
    assert calls == [3, 1]
    with pytest.raises(ValueError, match="max_bytes"):
        FeatureCache(extract, max_bytes=0)


def test_digest_tells_images_apart_by_values_and_shape():
    x = torch.zeros(3, 4, 4)
    assert image_digest(x) == image_digest(x.clone())
    assert image_digest(x) != image_digest(x + 1e-3)
    assert image_digest(x) != image_digest(torch.zeros(3, 2, 8))


def test_evaluate_with_and_without_the_cache_agree():
    model = tiny_model("attention")
    world = SyntheticSource(train_images_per_class=6, test_images_per_class=6)
    ds = make_dataset("synthetic", source=world, fold=0, split="test", shots=2,
                      episodes=12, seed=0)
    cached = evaluate(model, ds, iterations=2, device="cpu", input_size=64)
    plain = evaluate(model, ds, iterations=2, device="cpu", input_size=64, cache_features=False)
    assert len(cached["miou_per_iteration"]) == len(plain["miou_per_iteration"]) == 3
    for x, y in zip(cached["miou_per_iteration"], plain["miou_per_iteration"]):
        assert x == pytest.approx(y, abs=0.05)
