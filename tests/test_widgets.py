"""The book's widgets, headless: every control through its full range, frames and state checked."""

from __future__ import annotations

import struct
import sys
import types

import matplotlib
import pytest
import torch
from helpers import tiny_model
from matplotlib.colors import to_hex

from canetlib.data import SyntheticSource, make_dataset
from canetlib.evaluation import evaluate, resolve_input_size
from canetlib.teaching import visual
from canetlib.teaching.widgets import (
    FRAME_MAX_WIDTH,
    AttentionExplorer,
    EpisodeBrowser,
    IterationExplorer,
    iterations_of,
    run_episode,
)

pytest.importorskip("ipywidgets")


def pixel_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` read from a PNG (IHDR) or baseline/progressive JPEG (SOFn) header."""
    data = bytes(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    assert data.startswith(b"\xff\xd8"), "neither PNG nor JPEG"
    pos = 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"bad JPEG marker at {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        pos += 2 + length
    raise AssertionError("no SOF marker in the JPEG")


def check_natural_size(explorer) -> tuple[int, int]:
    """The frame is shown at its own pixel size: never stretched, shrinks on narrow screens."""
    width, height = pixel_size(explorer.image.value)
    layout = explorer.image.layout
    assert layout.width == f"{width}px"
    assert layout.height == "auto" and layout.max_width == "100%"
    assert (explorer.image.width, explorer.image.height) == (str(width), str(height))
    assert explorer.frame_size == (width, height)
    assert explorer.widget.layout.align_items == "flex-start"
    assert explorer.frame_box in explorer.widget.children
    assert explorer.image in explorer.frame_box.children
    if explorer.keep_height:  # the episode browser: frames of 1-shot and 5-shot episodes
        assert int(explorer.frame_box.layout.min_height[:-2]) >= height
    else:  # frames of one size: nothing reserved (no blank space when shrunk)
        assert explorer.frame_box.layout.min_height is None
    return width, height


def swatch(color) -> str:
    r, g, b = color
    return f"rgb({r}, {g}, {b})"


def key_entries(caption: str) -> dict[str, str]:
    """``{label: css colour}`` of the colour key at the end of a caption."""
    import re

    assert caption.count('class="canet-colour-key"') == 1
    key = caption.split('class="canet-colour-key"', 1)[1]
    return {label: colour for colour, label in
            re.findall(r"background: (rgb\([^)]*\))\"></span>&nbsp;([^<]+)</span>", key)}


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


def test_the_explorers_feed_a_model_at_its_own_size_as_the_evaluator_does(world) -> None:
    """A model that says its side (a checkpoint's recorded one) is run at it by the widgets,
    on a dataset and on a plain list of episodes, unless a size is given."""
    ds = episodes(world, shots=1, n=2)
    model = tiny_model()
    model.input_size = 80
    assert evaluate(model, ds, iterations=0, device="cpu")["settings"]["input_size"] == [80, 80]
    assert IterationExplorer.from_model(model, ds, count=1).runs[0].input_size == (80, 80)
    listed = [ds[0], ds[1]]
    assert IterationExplorer.from_model(model, listed, count=1).runs[0].input_size == (80, 80)
    given = IterationExplorer.from_model(model, ds, count=1, input_size=64)
    assert given.runs[0].input_size == (64, 64)
    five = tiny_model("attention")
    five.input_size = 72
    ds5 = episodes(world, shots=5, n=1)
    explorer = AttentionExplorer.from_model(five, ds5, count=1)
    torch.testing.assert_close(explorer.weights[0],
                               run_episode(five, ds5[0], input_size=72).attention)


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
            check_natural_size(explorer)
            last = explorer.image.value
            ious = explorer.runs[e].ious
            assert ious is not None and f"<b>{'Init' if t == 0 else t}: {ious[t]:.1f}</b>" \
                in explorer.caption.value
    assert explorer.slider.max == 3 and explorer.episode_slider.max == 2
    assert key_entries(explorer.caption.value) == {
        "prediction": swatch(visual.PRED_COLOR), "ground truth": swatch(visual.GT_COLOR),
        "ignored border": swatch(visual.IGNORE_COLOR)}
    assert "foreground probability" in explorer.caption.value
    # the probability scale is drawn from the figure's own colour map, 0 to 1
    cmap = matplotlib.colormaps[visual.PROBABILITY_CMAP]
    stops = ", ".join(to_hex(cmap(i / 5)) for i in range(6))
    assert f"linear-gradient(to right, {stops})" in explorer.caption.value


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
        width, _ = check_natural_size(explorer)
        assert width <= FRAME_MAX_WIDTH  # eight panels wrapped into two rows
        last = explorer.image.value
    assert explorer.frames_drawn == 4
    assert key_entries(explorer.caption.value) == {
        "support mask": swatch(visual.GT_COLOR), "ground truth": swatch(visual.GT_COLOR),
        "prediction": swatch(visual.PRED_COLOR), "ignored border": swatch(visual.IGNORE_COLOR)}
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
            check_natural_size(browser)
            seen.add(browser.shown)
        browser.slider.value = 0
    assert len(seen) == 6
    assert len(calls) == 6  # each prediction computed once, then kept
    assert browser._predictions[("test", 1)].shape == sets["test"][1]["query_image"].shape[-2:]
    assert key_entries(browser.caption.value) == {
        "support mask": swatch(visual.GT_COLOR), "ground truth": swatch(visual.GT_COLOR),
        "prediction": swatch(visual.PRED_COLOR), "ignored border": swatch(visual.IGNORE_COLOR)}


def test_episode_browser_without_model(world) -> None:
    ds = episodes(world, shots=1, n=2)
    browser = EpisodeBrowser(ds)
    assert browser.chooser not in browser.widget.children
    browser.slider.value = 1
    assert browser.frames_drawn == 2 and browser.shown == ("episodes", 1)
    assert "class" in browser.caption.value
    assert key_entries(browser.caption.value) == {
        "support mask": swatch(visual.GT_COLOR), "ground truth": swatch(visual.GT_COLOR),
        "ignored border": swatch(visual.IGNORE_COLOR)}  # no prediction without a model


def test_frames_keep_their_pixel_size_and_the_widget_its_height(world) -> None:
    one, five = episodes(world, shots=1, n=2), episodes(world, shots=5, n=2)
    browser = EpisodeBrowser({"1-shot": one, "5-shot": five})
    reserved = browser.frame_box.layout.min_height
    w1, h1 = check_natural_size(browser)
    assert 450 <= w1 <= 700 and 250 <= h1 <= 400  # two panels at 100 dpi, not stretched
    browser.chooser.value = "5-shot"
    assert browser.shown == ("5-shot", 0)
    w5, h5 = check_natural_size(browser)
    # six panels in two rows of three, each as large as a 1-shot panel
    assert w5 <= FRAME_MAX_WIDTH and w5 > w1 and h5 > 1.5 * h1
    assert browser.frame_box.layout.min_height == reserved  # reserved up front, no jump
    browser.chooser.value = "1-shot"
    assert check_natural_size(browser) == (w1, h1)
    assert browser.frame_box.layout.min_height == reserved


def synthetic_item(h: int, w: int, box: tuple[int, int, int, int] | None, k: int = 1,
                   masked: bool = True) -> dict:
    """An episode whose query target is the rectangle ``box`` = (top, left, height, width)."""
    mask = torch.zeros(h, w, dtype=torch.long)
    if box is not None:
        top, left, bh, bw = box
        mask[top:top + bh, left:left + bw] = 1
    support = torch.zeros(k, h, w, dtype=torch.long)
    support[:, h // 4:h // 2, w // 4:w // 2] = 1
    item = {"query_image": torch.randn(3, h, w), "support_images": torch.randn(k, 3, h, w),
            "support_masks": support, "class_id": 1}
    if masked:
        item["query_mask"] = mask
    return item


def test_episode_browser_starts_on_a_visible_target() -> None:
    tiny = synthetic_item(50, 50, (20, 20, 2, 2))        # 0.16 % of the query
    cut = synthetic_item(50, 50, (46, 10, 4, 20))        # 3.2 %, a quarter of it on the border
    clear = synthetic_item(50, 50, (10, 10, 15, 15))     # 9 %, inside
    edge_ok = synthetic_item(50, 50, (0, 10, 20, 20))    # 16 %, 5 % of it on the border
    empty = synthetic_item(50, 50, None)
    cases = [
        ([tiny, empty, cut, clear, tiny], 3),
        ([edge_ok, tiny], 0),
        ([tiny, cut, tiny, cut], 1),                    # no clear target: the first large enough
        ([tiny, empty, tiny], 0),                       # none large enough: episode 0
        ([synthetic_item(50, 50, None, masked=False), clear], 0),  # no ground truth
    ]
    for data, start in cases:
        browser = EpisodeBrowser({"first": data, "second": [clear, tiny]})
        assert browser.start == start, start
        assert browser.shown == ("first", start) and browser.slider.value == start
        assert (browser.slider.min, browser.slider.max) == (0, len(data) - 1)  # range unchanged
        assert browser.frames_drawn == 1
        browser.chooser.value = "second"
        assert browser.shown == ("second", 0)
    # only the offered episodes (count) are searched
    assert EpisodeBrowser([tiny, tiny, clear], count=2).start == 0
    assert EpisodeBrowser([tiny, tiny, clear], count=3).start == 2


def test_every_control_redraws(world) -> None:
    """Slider and dropdown moves each draw a new frame at its own size, without error."""
    sets = {"a": episodes(world, shots=1, n=3), "b": episodes(world, shots=2, n=2)}
    browser = EpisodeBrowser(sets)
    frames = {browser.shown: bytes(browser.image.value)}
    for label, i in [("a", 2), ("b", 0), ("b", 1), ("a", 0), ("a", 1)]:
        if browser.chooser.value != label:
            browser.chooser.value = label
        browser.slider.value = i
        assert browser.shown == (label, i)
        check_natural_size(browser)
        frames[browser.shown] = bytes(browser.image.value)
    assert len(set(frames.values())) == len(frames) >= 5


def test_the_package_exports_what_the_book_imports() -> None:
    """``canetlib.teaching.widgets`` is a package split by job; every public name is still importable."""
    from canetlib.teaching import widgets

    for name in ["AttentionExplorer", "EpisodeBrowser", "EpisodeRun", "IterationExplorer",
                 "iterations_of", "run_episode", "FRAME_DPI", "FRAME_FORMAT",
                 "FRAME_MAX_WIDTH", "GROUND_TRUTH", "IGNORED", "PREDICTION", "SUPPORT_MASK",
                 "InputSize", "Item"]:
        assert name in widgets.__all__ and hasattr(widgets, name), name
    assert widgets.PREDICTION == (visual.PRED_COLOR, "prediction")


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def small_explorers(world) -> list:
    """One of each explorer, as small as they come."""
    return [IterationExplorer.from_model(tiny_model(), episodes(world, shots=1, n=2), count=2,
                                         iterations=1),
            AttentionExplorer.from_model(tiny_model("attention"), episodes(world, shots=2, n=2),
                                         count=2, iterations=1),
            EpisodeBrowser({"a": episodes(world, shots=1, n=2),
                            "b": episodes(world, shots=2, n=1)})]


def test_explorers_display_the_widget_view_and_the_static_figure(world, monkeypatch) -> None:
    """The mime bundle: the live view (JupyterLab, Colab) plus the static figure (the book)."""
    from IPython.core.formatters import DisplayFormatter

    from canetlib.teaching.widgets import explorer as explorer_module

    made = []
    real = explorer_module.static_figure
    monkeypatch.setattr(explorer_module, "static_figure", lambda e: made.append(e) or real(e))
    for explorer in small_explorers(world):
        assert not made  # drawn lazily, on the first display
        bundle = explorer._repr_mimebundle_()
        assert set(bundle) == {WIDGET_VIEW, "text/plain", "text/html"}
        assert bundle[WIDGET_VIEW]["model_id"] == explorer.widget.model_id
        if hasattr(explorer.widget, "_repr_mimebundle_"):  # ipywidgets 8: its own bundle
            assert {k: bundle[k] for k in (WIDGET_VIEW, "text/plain")} == \
                explorer.widget._repr_mimebundle_()
        else:  # ipywidgets 7 (Colab's): the bundle its _ipython_display_ sends
            assert bundle["text/plain"] == repr(explorer.widget)
        assert bundle["text/html"].startswith(
            f'<div class="canet-static-explorer" data-explorer="{explorer.static_name}"')
        assert bundle["text/html"] == explorer.static_html()
        # IPython shows the bundle: nothing displays the widget alone around it
        data, _ = DisplayFormatter().format(explorer)
        assert set(data) >= {WIDGET_VIEW, "text/html"}
        assert data["text/html"] is bundle["text/html"]
        assert made == [explorer]  # computed once
        made.clear()


def test_on_colab_only_the_live_widget_is_shown(world, monkeypatch) -> None:
    """Colab gets the widget view alone (in ipywidgets 7's format, which it ships)."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    explorer = small_explorers(world)[0]
    assert set(explorer._repr_mimebundle_()) == {WIDGET_VIEW, "text/plain"}
    explorer.widget.close()
    assert explorer._repr_mimebundle_() == {}  # a closed widget has no view


def test_live_frames_are_drawn_by_view(world) -> None:
    """The live widget draws each state with ``view``, the method the static figure calls."""
    for explorer in small_explorers(world):
        seen = []
        view = explorer.view
        explorer.view = lambda state, view=view, seen=seen: seen.append(state) or view(state)
        slider = explorer.slider
        slider.value = 1 if slider.max >= 1 else 0
        if isinstance(explorer, EpisodeBrowser):
            explorer.chooser.value = "b"
            assert seen == [(0, 1), (1, 0)]
        elif isinstance(explorer, IterationExplorer):
            explorer.episode_slider.value = 1
            assert seen == [(0, 1), (1, 1)]
        else:
            assert seen == [(1,)]
        assert explorer.caption.value == explorer.static_figure().caption(seen[-1])
