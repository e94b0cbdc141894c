"""The evaluator: agrees with a hand loop, original-size IoU, one backbone pass per image."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import FakeEpisodes, tiny_model
from torch.nn import functional as F

from canetlib.evaluation import (
    EvalResult,
    SeedsResult,
    binary_prediction,
    evaluate,
    evaluate_seeds,
    resize_episode,
    resolve_input_size,
)
from canetlib.evaluation.metrics import FewShotMeter, mean_std
from canetlib.model import MULTI_SCALE


def hand_loop(model: Any, dataset: FakeEpisodes, iterations: int,
              size: tuple[int, int] | None) -> list[FewShotMeter]:
    """One episode at a time, the plain way: forward, upsample each iteration, argmax."""
    meters = [FewShotMeter([1, 2, 3]) for _ in range(iterations + 1)]
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            q, s, m = item["query_image"], item["support_images"], item["support_masks"]
            if size is not None:
                q = F.interpolate(q[None], size=size, mode="bilinear", antialias=True)[0]
                s = F.interpolate(s, size=size, mode="bilinear", antialias=True)
                m = F.interpolate(m[:, None].float(), size=size, mode="nearest")[:, 0].long()
            out = model(q[None], s[None], m[None], iterations=iterations)
            target = item["query_mask"]
            for meter, logits in zip(meters, out.logits):
                up = F.interpolate(logits, size=target.shape, mode="bilinear", align_corners=True)
                meter.update(up.argmax(1), target[None], [item["class_id"]])
    return meters


def test_matches_a_hand_loop_at_native_size() -> None:
    model, data = tiny_model(), FakeEpisodes(7)
    result = evaluate(model, data, iterations=2, batch_size=3, input_size="native")
    meters = hand_loop(model, data, 2, None)
    assert result["miou_per_iteration"] == pytest.approx([100 * m.miou() for m in meters])
    assert result["fbiou_per_iteration"] == pytest.approx([100 * m.fbiou() for m in meters])
    assert result["miou"] == pytest.approx(100 * meters[-1].miou())
    assert result["episodes"] == 7


def test_original_size_with_varying_images(monkeypatch: pytest.MonkeyPatch) -> None:
    from canetlib.evaluation import loop

    model = tiny_model()
    data = FakeEpisodes(6, sizes=[(40, 56), (52, 36), (48, 48)], vary_support=True)
    scored: list[tuple[int, ...]] = []
    original = loop.counts

    def spy(fg: torch.Tensor, target: torch.Tensor) -> Any:
        assert fg.shape[-2:] == target.shape[-2:]
        scored.extend([(fg.shape[0], *fg.shape[-2:])] * fg.shape[1])  # one per episode
        return original(fg, target)

    monkeypatch.setattr(loop, "counts", spy)
    result = evaluate(model, data, iterations=1, batch_size=4, input_size=40)
    # every episode scored once, at its query's original size, both iterations together
    expected = [(2, *data[i]["query_mask"].shape) for i in range(6)]
    assert sorted(scored) == sorted(expected)
    meters = hand_loop(model, data, 1, (40, 40))
    assert result["miou_per_iteration"] == pytest.approx([100 * m.miou() for m in meters])
    assert result["settings"]["input_size"] == [40, 40]


def test_native_size_groups_varying_shapes() -> None:
    model = tiny_model()
    data = FakeEpisodes(5, sizes=[(40, 48), (48, 40)])
    result = evaluate(model, data, iterations=1, batch_size=5, input_size="native")
    meters = hand_loop(model, data, 1, None)
    assert result["miou"] == pytest.approx(100 * meters[-1].miou())


def test_one_entry_per_iteration_and_no_selection() -> None:
    result = evaluate(tiny_model(), FakeEpisodes(3), iterations=3, input_size="native")
    assert len(result["miou_per_iteration"]) == 4
    assert len(result["fbiou_per_iteration"]) == 4
    assert result["miou"] == result["miou_per_iteration"][-1]
    assert result["miou_init"] == result["miou_per_iteration"][0]
    assert set(result["per_class_iou"]) == {"red", "green", "blue"}
    assert [c["episodes"] for c in result["classes"]] == [1, 1, 1]


@pytest.mark.parametrize("scales,extra", [((1.0,), 1), (MULTI_SCALE, 3)])
def test_backbone_runs_once_per_image(scales: tuple[float, ...], extra: int) -> None:
    model = tiny_model(fusion="feature-avg")
    images: list[int] = []
    model.backbone.register_forward_hook(lambda mod, args, out: images.append(args[0].shape[0]))
    data = FakeEpisodes(5, shots=2)
    evaluate(model, data, iterations=4, batch_size=2, input_size="native", scales=scales)
    assert sum(images) == 5 * (extra + 2)


def test_multi_scale_averages_and_reports_every_iteration() -> None:
    result = evaluate(tiny_model(), FakeEpisodes(4), iterations=2, input_size="native",
                      scales=MULTI_SCALE)
    assert len(result["miou_per_iteration"]) == 3
    assert result["settings"]["scales"] == [0.7, 1.0, 1.3]


def test_seeds_mean_and_sample_std() -> None:
    model = tiny_model()
    out = evaluate_seeds(model, [0, 1, 2], lambda s: FakeEpisodes(4, seed=s), iterations=1,
                         input_size="native")
    single = [evaluate(model, FakeEpisodes(4, seed=s), iterations=1, input_size="native")
              for s in (0, 1, 2)]
    assert out["seeds"] == [0, 1, 2]
    mean, std = mean_std([r["miou"] for r in single])
    assert out["miou"] == pytest.approx(mean)
    assert out["miou_std"] == pytest.approx(std)
    assert out["miou_per_iteration"][0] == pytest.approx(
        mean_std([r["miou_per_iteration"][0] for r in single])[0])
    assert len(out["runs"]) == 3 and out["episodes"] == 12


def test_per_episode_details_and_training_flag_restored() -> None:
    model = tiny_model().train()
    result = evaluate(model, FakeEpisodes(3), iterations=1, input_size="native", per_episode=True)
    assert model.training and not model.backbone.training
    assert [e["index"] for e in result["per_episode"]] == [0, 1, 2]
    assert all(len(e["iou_per_iteration"]) == 2 for e in result["per_episode"])


def test_resize_keeps_tiny_support_objects() -> None:
    mask = torch.zeros(1, 100, 100, dtype=torch.long)
    mask[0, 50, 51] = 1
    _, s, m = resize_episode(torch.zeros(3, 100, 100), torch.zeros(1, 3, 100, 100), mask, (10, 10))
    assert s.shape == (1, 3, 10, 10) and int((m == 1).sum()) == 1


def test_input_size_rules() -> None:
    assert resolve_input_size(FakeEpisodes(1), "native") is None
    assert resolve_input_size(FakeEpisodes(1), 64) == (64, 64)
    assert resolve_input_size(FakeEpisodes(1), None) == (321, 321)  # unknown dataset
    with pytest.raises(ValueError, match="input_size"):
        resolve_input_size(FakeEpisodes(1), 4)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="iterations"):
        evaluate(tiny_model(), FakeEpisodes(1), iterations=-1)
    with pytest.raises(ValueError, match="1-shot"):
        evaluate(tiny_model(), FakeEpisodes(2, shots=2), input_size="native")


def test_binary_prediction_is_the_two_class_argmax() -> None:
    maps = torch.randn(3, 2, 5, 7)
    maps[0, :, 0, 0] = 0.25  # a tie goes to background, as argmax does
    up = F.interpolate(maps, size=(11, 13), mode="bilinear", align_corners=True)
    assert torch.equal(binary_prediction(maps, (11, 13)), up.argmax(1))
    assert torch.equal(binary_prediction(maps), maps.argmax(1))  # no size: as they are


RESULT_KEYS = ["miou", "fbiou", "miou_init", "miou_per_iteration", "fbiou_per_iteration",
               "per_class_iou", "all_objects_miou", "per_class_iou_per_iteration", "classes",
               "missing_classes", "episodes", "seconds", "episodes_per_second", "settings",
               "timings"]


def test_the_result_is_typed_and_reads_like_the_old_dict() -> None:
    result = evaluate(tiny_model(), FakeEpisodes(3), iterations=1, input_size="native")
    assert isinstance(result, EvalResult)
    assert list(result) == list(result.keys()) == list(result.to_dict()) == RESULT_KEYS
    assert result["miou"] == result.miou and result.get("per_episode") is None
    assert "per_episode" not in result and result.all_objects_miou is None  # no such masks
    with pytest.raises(TypeError, match="read-only"):
        result["seed"] = 0  # type: ignore[index]
    plain = result.to_dict()
    plain["settings"]["device"] = "elsewhere"  # an independent copy
    assert result.settings["device"] == "cpu" and result.input_size is None
    detailed = evaluate(tiny_model(), FakeEpisodes(2), iterations=1, input_size="native",
                        per_episode=True)
    assert list(detailed.to_dict()) == [*RESULT_KEYS[:-1], "per_episode", "timings"]


def test_the_size_the_model_was_trained_at_wins_over_the_source_default() -> None:
    model = tiny_model()
    model.input_size = 40
    result = evaluate(model, FakeEpisodes(2), iterations=0)
    assert result.input_size == (40, 40) and result.settings["input_size"] == [40, 40]
    assert evaluate(model, FakeEpisodes(2), iterations=0, input_size=32).input_size == (32, 32)
    assert resolve_input_size(FakeEpisodes(1), None, model) == (40, 40)


def test_seeds_result_keys_and_runs() -> None:
    out = evaluate_seeds(tiny_model(), [0, 1], lambda s: FakeEpisodes(3, seed=s), iterations=1,
                         input_size="native")
    assert isinstance(out, SeedsResult) and isinstance(out["runs"][0], EvalResult)
    plain = out.to_dict()
    assert list(plain) == [
        "seeds", "runs", "miou", "miou_std", "fbiou", "fbiou_std", "miou_init", "miou_init_std",
        "miou_per_iteration", "miou_per_iteration_std", "fbiou_per_iteration",
        "fbiou_per_iteration_std", "per_class_iou", "per_class_iou_std", "missing_classes",
        "episodes", "seconds", "settings"]  # no all_objects_miou: the fakes lack the masks
    assert list(plain["runs"][0]) == RESULT_KEYS and isinstance(plain["runs"][0], dict)
