"""The book's widgets, headless: every control through its full range, frames and state checked."""

from __future__ import annotations

import pytest
import torch
from evalfakes import tiny_model

from canetlib.data import SyntheticSource, make_dataset
from canetlib.evaluate import evaluate, resolve_input_size
from canetlib.widgets import (
    AttentionExplorer,
    EpisodeBrowser,
    IterationExplorer,
    iterations_of,
    run_episode,
)

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def world() -> SyntheticSource:
    return SyntheticSource(train_images_per_class=6, test_images_per_class=6)


def episodes(world: SyntheticSource, shots: int, n: int = 3, split: str = "test"):
    return make_dataset("synthetic", source=world, fold=0, split=split, shots=shots,
                        episodes=n, seed=3, train_size=64)


def ragged_episode(ds) -> dict:
    """The first episode whose supports come as a list of differently sized images."""
    for i in range(len(ds)):
        item = ds[i]
        if isinstance(item["support_images"], list):
            return item
    raise AssertionError("no episode with supports of different sizes")


def test_run_episode_matches_the_evaluator_on_original_size_episodes(world) -> None:
    ds = episodes(world, shots=2, n=4)
    model = tiny_model("mask-avg")
    size = resolve_input_size(ds, None)
    result = evaluate(model, ds, iterations=2, batch_size=1, per_episode=True, device="cpu")
    for i, ep in enumerate(result["per_episode"]):
        item = ds[i]
        run = run_episode(model, item, iterations=2, input_size=size)
        h, w = item["query_image"].shape[-2:]
        assert run.input_size == size
        assert len(run.probs) == len(run.masks) == 3
        assert all(p.shape == (2, h, w) for p in run.probs)
        assert all(m.shape == (h, w) and set(m.unique().tolist()) <= {0, 1} for m in run.masks)
        torch.testing.assert_close(run.probs[0].sum(0), torch.ones(h, w))
        assert run.ious == pytest.approx(ep["iou_per_iteration"])
        assert run.attention is None


def test_ragged_supports_and_multi_scale(world) -> None:
    item = ragged_episode(episodes(world, shots=5, n=12))
    model = tiny_model("attention")
    run = run_episode(model, item, iterations=1, input_size=64)
    assert run.attention is not None and run.attention.shape == (5,)
    assert float(run.attention.sum()) == pytest.approx(1.0, abs=1e-5)
    ms = run_episode(model, item, iterations=1, input_size=64, scales=(0.75, 1.0))
    assert ms.probs[-1].shape[-2:] == item["query_image"].shape[-2:]
    torch.testing.assert_close(ms.probs[-1].sum(0), torch.ones(ms.probs[-1].shape[-2:]))
    # no input size: the query keeps its size, the supports are resized to it
    own = iterations_of(model, item, iterations=2)
    assert len(own) == 3 and own[0].shape[-2:] == item["query_image"].shape[-2:]
    assert run_episode(model, item, iterations=0).input_size == tuple(item["query_image"].shape[-2:])


def test_iteration_explorer_moves_through_every_episode_and_iteration(world) -> None:
    ds = episodes(world, shots=1, n=3)
    explorer = IterationExplorer.from_model(tiny_model(), ds, count=3, iterations=3)
    assert explorer.iterations == 3 and len(explorer.runs) == 3
    assert explorer.runs[0].input_size == resolve_input_size(ds, None)
    assert explorer.shown == (0, 0) and explorer.frames_drawn == 1
    assert explorer.episode_slider in explorer.widget.children
    last = explorer.image.value
    for e in range(3):
        for t in ([0, 1, 2, 3] if e % 2 == 0 else [3, 2, 1, 0]):
            before = explorer.frames_drawn
            explorer.episode_slider.value = e
            explorer.slider.value = t
            if (e, t) == (0, 0):
                continue
            assert explorer.frames_drawn == before + 1, (e, t)
            assert explorer.shown == (e, t)
            assert explorer.image.value != last
            assert bytes(explorer.image.value).startswith(b"\xff\xd8")  # JPEG
            last = explorer.image.value
            ious = explorer.runs[e].ious
            assert ious is not None and f"<b>{'Init' if t == 0 else t}: {ious[t]:.1f}</b>" \
                in explorer.caption.value
    assert explorer.slider.max == 3 and explorer.episode_slider.max == 2


def test_iteration_explorer_for_one_episode(world) -> None:
    item = episodes(world, shots=1, n=1)[0]
    explorer = IterationExplorer.from_episode(tiny_model(), item, iterations=2)
    assert explorer.episode_slider not in explorer.widget.children
    frames = []
    for t in range(3):
        explorer.slider.value = t
        frames.append(explorer.image.value)
    assert len(set(frames)) == 3 and explorer.frames_drawn == 3 and explorer.shown == (0, 2)


def test_attention_explorer_on_ragged_five_shot_episodes(world) -> None:
    ds = episodes(world, shots=5, n=3)
    explorer = AttentionExplorer.from_model(tiny_model("attention"), ds, count=3, iterations=1)
    assert explorer.shown == 0 and explorer.frames_drawn == 1
    assert explorer.ious is not None and explorer.predictions is not None
    for i in range(3):
        item = ds[i]
        assert explorer.weights[i].shape == (5,)
        assert float(explorer.weights[i].sum()) == pytest.approx(1.0, abs=1e-5)
        assert explorer.predictions[i].shape == item["query_image"].shape[-2:]
    last = explorer.image.value
    for i in [1, 2, 0]:
        explorer.slider.value = i
        assert explorer.shown == i and explorer.image.value != last
        assert f"{float(explorer.weights[i][0]):.2f}" in explorer.caption.value
        last = explorer.image.value
    assert explorer.frames_drawn == 4
    with pytest.raises(ValueError, match="attention"):
        AttentionExplorer.from_model(tiny_model("feature-avg"), ds, count=1)
    with pytest.raises(ValueError, match="weight vectors"):
        AttentionExplorer([ds[0]], [])


def test_episode_browser_moves_through_datasets_and_episodes(world) -> None:
    sets = {"train": episodes(world, shots=1, n=4, split="train"),
            "test": episodes(world, shots=2, n=3)}
    model = tiny_model("feature-avg")
    calls = []
    inner = EpisodeBrowser.with_model(sets, model, count=3).predict
    assert inner is not None

    def predict(item):
        calls.append(item["index"])
        return inner(item)

    browser = EpisodeBrowser(sets, count=3, predict=predict)
    assert browser.shown == ("train", 0) and browser.slider.max == 2
    assert browser.chooser in browser.widget.children
    seen = {browser.shown}
    last = browser.image.value
    for label in ["train", "test", "train"]:
        browser.chooser.value = label
        assert browser.shown == (label, 0)
        seen.add(browser.shown)
        for i in range(1, 3):
            before = browser.frames_drawn
            browser.slider.value = i
            assert browser.frames_drawn == before + 1 and browser.shown == (label, i)
            assert browser.image.value != last
            last = browser.image.value
            assert f"{label}, episode {i}" in browser.caption.value
            seen.add(browser.shown)
        browser.slider.value = 0
    assert len(seen) == 6
    assert len(calls) == 6  # each prediction computed once, then kept
    assert browser._predictions[("test", 1)].shape == sets["test"][1]["query_image"].shape[-2:]


def test_episode_browser_without_model(world) -> None:
    ds = episodes(world, shots=1, n=2)
    browser = EpisodeBrowser(ds)
    assert browser.chooser not in browser.widget.children
    browser.slider.value = 1
    assert browser.frames_drawn == 2 and browser.shown == ("episodes", 1)
    assert "class" in browser.caption.value
