"""The evaluator's feature cache: same outputs, each distinct image through the backbone once."""

import pytest
import torch

from canetlib import CANet
from canetlib.data import SyntheticSource, make_dataset
from canetlib.evaluate import evaluate
from canetlib.model.cache import FeatureCache, feature_cache, image_digest


def tiny_model(fusion: str | None = None) -> CANet:
    torch.manual_seed(0)
    return CANet(pretrained=False, backbone="resnet-tiny", backbone_widths=(8, 8, 16, 16),
                 width=16, dropout=0.0, fusion=fusion).eval()


def test_cached_extract_equals_plain_and_counts_images():
    model = tiny_model()
    a, b = torch.randn(2, 3, 32, 32)
    batch = torch.stack([a, b, a])
    with torch.inference_mode():
        plain = model.extract(batch)
        with feature_cache(model) as cache:
            first = model.extract(batch)
            again = model.extract(torch.stack([b, a]))
        assert "extract" not in model.__dict__  # the method is back after the block
    assert torch.allclose(first, plain, atol=1e-5) and torch.allclose(again, plain[[1, 0]], atol=1e-5)
    assert (cache.misses, cache.hits, len(cache)) == (2, 3, 2)


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
