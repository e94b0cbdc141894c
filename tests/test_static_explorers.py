"""The explorers' static HTML figures: one frame per control state, the live captions, no network.

The unit tests read the fragment's data (the JSON its inline script holds) and compare it with
the live widget moved to the same state. The browser test (slow) writes all three figures into
one page, serves it from 127.0.0.1, moves every control in headless Chromium (the network is
blocked: any request elsewhere fails the test) and checks that frame and caption follow.
Set ``CANET_BROWSER_SCREENSHOTS`` to a folder to keep screenshots of each figure.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import LAUNCH_ARGS, chromium, require
from helpers import tiny_model

from canetlib.data import SyntheticSource, make_dataset
from canetlib.teaching.widgets import (
    AttentionExplorer,
    EpisodeBrowser,
    IterationExplorer,
    static_page,
)
from canetlib.teaching.widgets.static import Control, control_states, static_figure

pytest.importorskip("ipywidgets")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def world() -> SyntheticSource:
    return SyntheticSource(train_images_per_class=6, test_images_per_class=6)


def episodes(world: SyntheticSource, shots: int, n: int, split: str = "test"):
    return make_dataset("synthetic", source=world, fold=0, split=split, shots=shots,
                        episodes=n, seed=3, train_size=64)


@pytest.fixture(scope="module")
def iterations(world) -> IterationExplorer:
    return IterationExplorer.from_model(tiny_model(), episodes(world, 1, 2), count=2,
                                        iterations=2)


@pytest.fixture(scope="module")
def attention(world) -> AttentionExplorer:
    return AttentionExplorer.from_model(tiny_model("attention"), episodes(world, 5, 2), count=2,
                                        iterations=1)


@pytest.fixture(scope="module")
def browser(world) -> EpisodeBrowser:
    return EpisodeBrowser({"1-shot": episodes(world, 1, 3), "5-shot": episodes(world, 5, 2)})


def script_data(fragment: str) -> dict[str, Any]:
    """The JSON the fragment's inline script reads."""
    match = re.search(r"var data = (\{.*?\});\n", fragment, re.DOTALL)
    assert match is not None, "no data in the script"
    return json.loads(match.group(1))


def move(explorer: Any, state: tuple[int, ...]) -> None:
    """Set the live widget's controls to ``state``."""
    if isinstance(explorer, IterationExplorer):
        explorer.episode_slider.value, explorer.slider.value = state
    elif isinstance(explorer, AttentionExplorer):
        (explorer.slider.value,) = state
    else:
        explorer.chooser.value = list(explorer.datasets)[state[0]]
        explorer.slider.value = state[1]


def numbers(html: str) -> list[str]:
    """Every decimal number in a caption (IoUs, weights), in order."""
    return re.findall(r"\d+\.\d+", html)


@pytest.mark.parametrize("name, count", [("iterations", 2 * 3), ("attention", 2),
                                         ("browser", 3 + 2)])
def test_one_frame_per_control_state(name: str, count: int, request) -> None:
    explorer = request.getfixturevalue(name)
    figure = explorer.static_figure()
    assert len(figure.states) == len(figure.frames) == len(figure.sizes) == count
    assert sorted(figure.states) == sorted(control_states(figure.controls))
    assert len({f for f, _ in figure.states.values()}) == count  # one frame each
    fragment = explorer.static_html()
    data = script_data(fragment)
    assert len(data["states"]) == len(data["frames"]) == count
    first = figure.states[figure.initial][0]
    # every frame a data: URI, the first one in the <img> (not twice in the page)
    assert all(uri.startswith("data:image/jpeg;base64,") for i, uri in
               enumerate(data["frames"]) if i != first)
    assert data["frames"][first] == ""
    assert fragment.count("data:image/jpeg;base64,") == count
    assert f'<div class="canet-static-explorer" data-explorer="{name}"' in fragment
    assert 'class="canet-frame"' in fragment and 'class="canet-caption"' in fragment
    assert fragment.count("<script>") == 1


@pytest.mark.parametrize("name", ["iterations", "attention", "browser"])
def test_captions_are_the_live_captions(name: str, request) -> None:
    explorer = request.getfixturevalue(name)
    figure = explorer.static_figure()
    data = script_data(explorer.static_html())
    for state in figure.states:
        move(explorer, state)
        live = explorer.caption.value
        assert figure.caption(state) == live, state
        entry = data["states"][",".join(map(str, state))]
        assert data["captions"][entry[1]] + data["key"] == live
        assert numbers(figure.caption(state)) == numbers(live)
    move(explorer, figure.initial)


def test_iteration_captions_hold_every_iou(iterations: IterationExplorer) -> None:
    figure = iterations.static_figure()
    for (e, t), (_, caption) in figure.states.items():
        ious = iterations.runs[e].ious
        assert ious is not None
        assert numbers(caption) == [f"{v:.1f}" for v in ious]
        assert f"<b>{'Init' if t == 0 else t}: {ious[t]:.1f}</b>" in caption
    assert [c.name for c in figure.controls] == ["episode", "iteration"]
    fragment = iterations.static_html()
    for control in ("episode", "iteration"):
        assert re.search(rf'<input type="range" [^>]*data-control="{control}" min="0" '
                         rf'max="{2 if control == "iteration" else 1}"', fragment)
        assert f">{control}</label>" in fragment


def test_attention_captions_hold_the_weights(attention: AttentionExplorer) -> None:
    figure = attention.static_figure()
    assert attention.ious is not None
    for (i,), (_, caption) in figure.states.items():
        weights = [f"{float(v):.2f}" for v in attention.weights[i]]
        assert numbers(caption) == [*weights, f"{attention.ious[i]:.1f}"]


def test_browser_slider_follows_the_set(browser: EpisodeBrowser) -> None:
    figure = browser.static_figure()
    assert sorted(figure.states) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    fragment = browser.static_html()
    assert re.search(r'<select [^>]*data-control="set">'
                     r'<option value="0" selected>1-shot</option>'
                     r'<option value="1">5-shot</option></select>', fragment)
    assert re.search(r'<input type="range" [^>]*data-control="episode" min="0" max="2"',
                     fragment)
    data = script_data(fragment)
    assert data["controls"][1]["lengths"] == [3, 2] and data["controls"][1]["per"] == "set"
    assert ">episodes</label>" in fragment  # the live dropdown's description
    # frames of 1-shot and 5-shot episodes differ in height: the tallest is reserved
    tallest = max(h for _, h in figure.sizes)
    assert f"min-height: {tallest}px" in fragment


def test_hidden_controls_are_not_shown(world) -> None:
    one = IterationExplorer.from_episode(tiny_model(), episodes(world, 1, 1)[0], iterations=1)
    fragment = one.static_html()
    assert 'data-control="episode"' not in fragment and 'data-control="iteration"' in fragment
    assert sorted(one.static_figure().states) == [(0, 0), (0, 1)]
    single = EpisodeBrowser(episodes(world, 1, 2))
    assert "<select" not in single.static_html()


@pytest.mark.parametrize("name", ["iterations", "attention", "browser"])
def test_no_external_reference(name: str, request) -> None:
    fragment = request.getfixturevalue(name).static_html()
    assert 'src="data:image/jpeg;base64,' in fragment
    # the frames' base64 may spell anything: read the rest
    fragment = re.sub(r"data:image/jpeg;base64,[A-Za-z0-9+/=]*", "data:", fragment)
    assert not re.search(r"(?:src|href|action)\s*=\s*[\"']?(?:[a-z]+:)?//", fragment,
                         re.IGNORECASE)
    assert "http" not in fragment.lower() and "require" not in fragment.lower()
    assert "url(" not in fragment and "<link" not in fragment and "import(" not in fragment
    assert not re.search(r"<script[^>]*\bsrc\b", fragment)
    assert set(re.findall(r'src="([a-z]+):', fragment)) == {"data"}


def test_fragments_have_unique_ids(iterations: IterationExplorer) -> None:
    first, second = iterations.static_figure().html(), iterations.static_figure().html()
    ids = [re.search(r'id="(canet-static-[^"]+)"', f).group(1) for f in (first, second)]
    assert ids[0] != ids[1]
    for fragment, root in zip((first, second), ids, strict=True):
        assert f"document.getElementById({json.dumps(root)})" in fragment
        assert re.findall(r'id="([^"]+)"', fragment) == [root, f"{root}-episode",
                                                         f"{root}-iteration"]


def test_over_budget_keeps_the_first_episodes(iterations: IterationExplorer) -> None:
    full = static_figure(iterations)
    one_episode = sum(len(full.frames[f]) for (e, _), (f, _) in full.states.items() if e == 0)
    small = static_figure(iterations, budget=int(1.4 * one_episode * 4 / 3), qualities=(75,))
    assert sorted(small.states) == [(0, 0), (0, 1), (0, 2)]
    assert small.controls[0].lengths == (1,)
    assert "the first 1 of the 2 episodes" in small.note
    fragment = small.html()
    assert 'class="canet-static-note"' in fragment and "first 1 of the 2 episodes" in fragment
    assert re.search(r'data-control="episode" min="0" max="0"', fragment)
    # a lower quality is tried before episodes are dropped
    lower = static_figure(iterations, budget=_b64(full) - 1, qualities=(95, 40))
    assert lower.quality == 40 and not lower.note and len(lower.states) == len(full.states)


def _b64(figure: Any) -> int:
    return sum(4 * ((len(f) + 2) // 3) for f in figure.frames)


def test_control_states_follow_the_dropdown() -> None:
    controls = [Control("set", options=("a", "b", "c")),
                Control("episode", (2, 1, 3), per="set")]
    assert control_states(controls) == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1), (2, 2)]
    assert control_states([Control("episode", (2,)), Control("iteration", (2,))]) == [
        (0, 0), (0, 1), (1, 0), (1, 1)]


def test_write_static_html(tmp_path: Path, attention: AttentionExplorer) -> None:
    path = attention.write_static_html(tmp_path / "attention.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and attention.static_html() in page
    assert '<meta charset="utf-8">' in page


# -- the browser test ------------------------------------------------------------------------

@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served on 127.0.0.1 (quietly), and its URL."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        del format, args


STATE_JS = """root => {
    const cap = root.querySelector('.canet-caption');
    return {src: root.querySelector('img.canet-frame').getAttribute('src'),
            state: root.getAttribute('data-state'), caption: cap.innerHTML,
            bold: Array.from(cap.querySelectorAll('b')).map(b => b.textContent),
            text: cap.textContent,
            readouts: Array.from(root.querySelectorAll('output')).map(o => o.textContent),
            width: root.querySelector('img.canet-frame').getAttribute('width')};
}"""

#: set a control's value and send one event (``input`` or ``change``) only
SET_JS = """([root, name, value, type]) => {
    const el = root.querySelector(`[data-control="${name}"]`);
    el.value = String(value);
    el.dispatchEvent(new Event(type, {bubbles: true}));
}"""


def _expected_caption(explorer: Any, state: tuple[int, ...]) -> str:
    """The text of the state's caption as the browser prints it."""
    import html as html_module

    text = re.sub(r"<[^>]+>", "", explorer.static_figure().caption(state))
    return html_module.unescape(text)


def _check_shown(page: Any, root: Any, explorer: Any, state: tuple[int, ...],
                 before: dict[str, Any]) -> dict[str, Any]:
    """The figure shows ``state``: a new frame and the state's caption, with its numbers."""
    now = page.evaluate(STATE_JS, root)
    key = ",".join(map(str, state))
    assert now["state"] == key, (now["state"], key)
    assert now["src"] != before["src"] and now["src"].startswith("data:image/jpeg;base64,")
    assert now["caption"] != before["caption"]
    assert " ".join(now["text"].split()) == " ".join(_expected_caption(explorer, state).split())
    if isinstance(explorer, IterationExplorer):
        e, t = state
        ious = explorer.runs[e].ious
        assert ious is not None
        assert now["bold"][-1] == f"{'Init' if t == 0 else t}: {ious[t]:.1f}"
    elif isinstance(explorer, AttentionExplorer):
        (i,) = state
        assert ", ".join(f"{float(v):.2f}" for v in explorer.weights[i]) in now["text"]
    else:
        assert f"{list(explorer.datasets)[state[0]]}, episode {state[1]}" in now["text"]
    return now


def _moves(explorer: Any) -> list[tuple[str, int, str, tuple[int, ...]]]:
    """``(control, value, how, state after)``: every control of the figure, moved."""
    if isinstance(explorer, IterationExplorer):
        return [("iteration", 1, "key", (0, 1)), ("iteration", 2, "input", (0, 2)),
                ("episode", 1, "change", (1, 2)), ("iteration", 0, "change", (1, 0)),
                ("episode", 0, "key-left", (0, 0))]
    if isinstance(explorer, AttentionExplorer):
        return [("episode", 1, "key", (1,)), ("episode", 0, "input", (0,)),
                ("episode", 1, "change", (1,))]
    start = explorer.static_figure().initial[1]  # the browser opens on a visible target
    step = (start + 1, "key") if start < 2 else (start - 1, "key-left")
    other = next(v for v in range(3) if v != step[0])
    return [("episode", step[0], step[1], (0, step[0])), ("episode", other, "input", (0, other)),
            ("set", 1, "select", (1, 0)), ("episode", 1, "change", (1, 1)),
            ("set", 0, "change", (0, 0))]


def _move(page: Any, root: Any, name: str, value: int, how: str) -> None:
    """Move a control as a user does (keyboard, dropdown) or with one event only."""
    control = root.locator(f'[data-control="{name}"]')
    if how.startswith("key"):
        control.focus()
        control.press("ArrowLeft" if how == "key-left" else "ArrowRight")
    elif how == "select":
        control.select_option(str(value))
    else:
        page.evaluate(SET_JS, [root.element_handle(), name, value, how])


def _screenshot(root: Any, name: str) -> None:
    folder = os.environ.get("CANET_BROWSER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        root.screenshot(path=str(Path(folder) / f"{name}.png"))


@pytest.mark.slow
def test_static_figures_move_in_chromium(served, iterations, attention, browser) -> None:
    require()
    from playwright.sync_api import sync_playwright

    folder, base = served
    explorers = [iterations, attention, browser]
    (folder / "index.html").write_text(static_page([e.static_html() for e in explorers]),
                                       encoding="utf-8")
    blocked: list[str] = []
    console: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith((base + "/", "file:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), headless=True,
                                     args=LAUNCH_ARGS)
        try:
            page = launched.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.route("**/*", route)
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
            page.goto(f"{base}/index.html", wait_until="load")
            roots = page.locator(".canet-static-explorer")
            assert roots.count() == 3
            for n, explorer in enumerate(explorers):
                root = roots.nth(n)
                assert root.get_attribute("data-ready") == "1"
                assert root.get_attribute("data-explorer") == explorer.static_name
                _screenshot(root, f"{explorer.static_name}-before")
                shown = page.evaluate(STATE_JS, root.element_handle())
                for step, (name, value, how, state) in enumerate(_moves(explorer)):
                    _move(page, root, name, value, how)
                    shown = _check_shown(page, root.element_handle(), explorer, state, shown)
                    if step == 0 or how == "select":
                        _screenshot(root, f"{explorer.static_name}-after-{name}")
            # the 5-shot set: the slider's range follows the dropdown
            slider = roots.nth(2).locator('[data-control="episode"]')
            roots.nth(2).locator('[data-control="set"]').select_option("1")
            assert slider.get_attribute("max") == "1" and slider.input_value() == "0"
            # a fragment inserted after the page loaded works on its own
            extra = iterations.static_figure().html()
            page.evaluate("""html => {
                const box = document.createElement('section');
                box.id = 'inserted';
                box.appendChild(document.createRange().createContextualFragment(html));
                document.body.appendChild(box);
            }""", extra)
            late = page.locator("#inserted .canet-static-explorer")
            late.wait_for()
            assert late.get_attribute("data-ready") == "1"
            before = page.evaluate(STATE_JS, late.element_handle())
            _move(page, late, "iteration", 2, "input")
            _check_shown(page, late.element_handle(), iterations, (0, 2), before)
            # the first figure did not move with it
            assert roots.nth(0).get_attribute("data-state") == "0,0"
        finally:
            launched.close()
    assert not blocked, blocked
    assert not console, console
