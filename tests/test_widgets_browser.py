"""The IterationExplorer in a real JupyterLab, driven by headless Chromium (slow, optional).

Starts JupyterLab on a temporary notebook that builds an explorer with a tiny
random CANet, runs it, and checks in the browser that the frame is shown at
its natural pixel size (not stretched to the output's width), that the colour
key renders, and that moving the iteration slider redraws the frame without
an error (no error output in the notebook, no error in the browser's
console). Skipped when JupyterLab, the ipywidgets lab extension, playwright or
a Chromium binary is missing (playwright's own browser download is not
needed: set ``CHROMIUM`` to a binary, else Debian's ``chromium`` is used).
Run with ``pytest -m slow tests/test_widgets_browser.py``; set
``CANET_BROWSER_SCREENSHOTS`` to a folder to keep screenshots of the page and
of each widget. The waits are on conditions, with generous limits for a
loaded two-core machine: a passing run takes about half a minute per screen.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import chromium, require

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
TOKEN = "canet-widgets-browser-test"

CELL = f"""\
import sys
sys.path.insert(0, {str(TESTS)!r})
import ipywidgets as w
from IPython.display import display
from helpers import tiny_model  # CANet(pretrained=False, backbone="resnet-tiny", ...)
from canetlib.data import SyntheticSource, make_dataset
from canetlib.teaching.widgets import IterationExplorer

world = SyntheticSource(train_images_per_class=6, test_images_per_class=6)
ds = make_dataset("synthetic", source=world, fold=0, split="test", shots=1, episodes=2, seed=3)
explorer = IterationExplorer.from_model(tiny_model(), ds, count=2, iterations=2)
log = w.Output()

def report(change):
    with log:
        print("REDRAWN", explorer.shown, explorer.frames_drawn, explorer.frame_size)

explorer.slider.observe(report, names="value")  # runs after the explorer's own redraw
display(explorer.widget, log)
print("FRAME", explorer.frame_size)
"""

BROWSER_CELL = """\
from canetlib.teaching.widgets import EpisodeBrowser

sets = {shots: make_dataset("synthetic", source=world, fold=0, split="test", shots=shots,
                            episodes=2, seed=3) for shots in (1, 5)}
browser = EpisodeBrowser({"1-shot": sets[1], "5-shot": sets[5]})
browser.widget.add_class("canet-test-browser")
browser.widget
"""


def _jupyter_path() -> str:
    """Every ``share/jupyter`` that may hold the widgets' lab extension (venvs included)."""
    dirs = [os.environ.get("JUPYTER_PATH", "")]
    dirs += [str(Path(p) / "share" / "jupyter") for p in {sys.prefix, sys.base_prefix}]
    return os.pathsep.join(d for d in dirs if d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


@pytest.fixture
def lab(tmp_path: Path):
    """A JupyterLab server on ``tmp_path`` with one notebook; yields its URL."""
    require("jupyterlab", "jupyterlab_widgets", "ipykernel")
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": cell_id,
                           "metadata": {}, "outputs": [], "source": source}
                          for cell_id, source in (("explorer", CELL), ("browser", BROWSER_CELL))],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                            "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "explorer.ipynb").write_text(json.dumps(notebook))
    home = tmp_path / "jupyter"
    # no "get notified about Jupyter news?" toast over the outputs (nor any request for news)
    notification = home / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, JUPYTER_PATH=_jupyter_path(), OMP_NUM_THREADS="1",
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "rt"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), IPYTHONDIR=str(home / "ipy"))
    port = _free_port()
    log = open(tmp_path / "lab.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
         "--ip=127.0.0.1", f"--ServerApp.root_dir={tmp_path}", f"--IdentityProvider.token={TOKEN}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--allow-root"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={TOKEN}", proc)
        yield f"{base}/lab/tree/explorer.ipynb?token={TOKEN}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        print((tmp_path / "lab.log").read_text(errors="replace")[-4000:])


#: the error outputs of the notebook's cells (tracebacks, warnings) as the browser shows them
ERROR_OUTPUTS = (".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                 ".jp-OutputArea-output .ansi-red-fg")

FRAME_JS = """(n = 0) => {
    const img = document.querySelectorAll('.jp-OutputArea .widget-image')[n];
    if (!img || !img.complete || !img.naturalWidth) return null;
    const box = img.getBoundingClientRect();
    const area = img.closest('.jp-OutputArea-output').getBoundingClientRect();
    const widget = img.closest('.widget-vbox').getBoundingClientRect();
    return {src: img.src, natural: [img.naturalWidth, img.naturalHeight],
            shown: [box.width, box.height], area: area.width, widget: widget.height,
            frame_box: img.parentElement.getBoundingClientRect().height};
}"""


def wait_until(page, condition: str, what: str, timeout_s: float) -> None:
    """Wait for the JavaScript ``condition``; on timeout fail saying what did not happen.

    The kernel's own tracebacks (a redraw that raised in a slider callback) are in
    JupyterLab's log, printed after the test.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"{what} within {timeout_s:.0f} s (notebook errors: "
                    f"{page.locator(ERROR_OUTPUTS).all_inner_texts()}; see JupyterLab's log)")


def check_natural_size(frame: dict) -> None:
    """Shown at its own pixel size, shrunk only when wider than the output; aspect kept."""
    assert frame["shown"][0] == pytest.approx(min(frame["natural"][0], frame["area"]),
                                              abs=1.5), frame
    ratio = frame["natural"][1] / frame["natural"][0]
    assert frame["shown"][1] / frame["shown"][0] == pytest.approx(ratio, rel=0.02), frame


@pytest.mark.parametrize("screen", [1600, 900], ids=["wide", "narrow"])
def test_explorers_in_jupyterlab(lab: str, screen: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": screen, "height": 1000})
            page.set_default_timeout(60_000)  # locators' waits on a loaded machine
            console: list[str] = []  # errors in the browser (widget views, the lab itself)
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
            page.goto(lab, timeout=180_000)
            wait_until(page, "() => window.jupyterapp && document.querySelector("
                       "'.jp-Notebook .jp-Cell')", "JupyterLab did not show the notebook", 180)
            # wait until the kernel is idle, then run the cells
            wait_until(page, """() => {
                const w = window.jupyterapp.shell.currentWidget;
                return w && w.sessionContext && w.sessionContext.session
                    && w.sessionContext.session.kernel
                    && w.sessionContext.session.kernel.status === 'idle';
            }""", "the kernel did not start", 180)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # the first frame, or an error (a traceback fails the test now, not at the timeout)
            wait_until(page, f"""() => ({FRAME_JS})() !== null
                || document.querySelector({json.dumps(ERROR_OUTPUTS)}) !== null""",
                       "the iteration explorer showed no frame", 300)
            errors = page.locator(ERROR_OUTPUTS)
            assert errors.count() == 0, errors.all_inner_texts()
            first = page.evaluate(FRAME_JS, 0)
            # the frame at its own pixel size: not stretched to the output's width
            check_natural_size(first)
            if screen >= 1600:
                assert first["natural"][0] < first["area"] - 50, first  # room to stretch into
            # the colour key, with its coloured squares
            key = page.locator(".canet-colour-key").first
            text = key.inner_text()
            assert "ground truth" in text and "prediction" in text, text
            colours = page.evaluate("""() => Array.from(document.querySelector(
                '.canet-colour-key').querySelectorAll('span[style*="background"]')).map(
                s => getComputedStyle(s).backgroundColor)""")
            assert "rgb(40, 200, 80)" in colours and "rgb(230, 40, 40)" in colours, colours
            # move the iteration slider (the second one) with the keyboard
            handle = page.locator(".jp-OutputArea .widget-hslider .noUi-handle").nth(1)
            handle.focus()
            handle.press("ArrowRight")
            wait_until(page, f"""() => {{
                const f = ({FRAME_JS})();
                return f !== null && f.src !== {json.dumps(first["src"])};
            }}""", "moving the iteration slider did not redraw the frame", 120)
            page.locator(".jp-RenderedText", has_text="REDRAWN (0, 1)").first.wait_for(
                timeout=120_000)
            second = page.evaluate(FRAME_JS, 0)
            print("frames in the browser:", first, second)
            shots = os.environ.get("CANET_BROWSER_SCREENSHOTS")  # to look at them by eye
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=f"{shots}/{screen}-page.png")
                page.locator(".jp-OutputArea .widget-vbox").first.screenshot(
                    path=f"{shots}/{screen}-iteration-explorer.png")
            assert second["natural"] == first["natural"], (first, second)
            assert second["shown"][0] == pytest.approx(first["shown"][0], abs=1.5)
            assert "<b>1:" in page.locator(".jp-OutputArea .widget-html-content").first \
                .inner_html()
            # the episode browser: 1-shot then 5-shot frames, natural size, same height
            wait_until(page, f"({FRAME_JS})(1) !== null", "the episode browser showed no frame",
                       180)
            one = page.evaluate(f"({FRAME_JS})(1)")
            check_natural_size(one)
            if shots:
                page.locator(".canet-test-browser").screenshot(
                    path=f"{shots}/{screen}-episode-browser-1shot.png")
            page.locator(".canet-test-browser select").select_option("5-shot")
            wait_until(page, f"""() => {{
                const f = ({FRAME_JS})(1);
                return f !== null && f.src !== {json.dumps(one["src"])};
            }}""", "choosing the 5-shot episodes did not redraw the episode browser", 120)
            five = page.evaluate(f"({FRAME_JS})(1)")
            print("episode browser frames:", one, five)
            if shots:
                page.locator(".canet-test-browser").screenshot(
                    path=f"{shots}/{screen}-episode-browser-5shot.png")
            check_natural_size(five)
            assert five["natural"][1] > 1.5 * one["natural"][1]  # two rows of panels
            if five["natural"][0] > five["area"]:  # narrow screen: shrunk, not cut or scrolled
                assert five["shown"][0] < five["natural"][0]
            # no jump: the frame area keeps its height (and so does the whole widget unless
            # the longer 5-shot caption wraps onto another line on a narrow screen)
            assert five["frame_box"] == pytest.approx(one["frame_box"], abs=1.0)
            if screen >= 1600:
                assert five["widget"] == pytest.approx(one["widget"], abs=1.0)
            assert errors.count() == 0, errors.all_inner_texts()
            assert not console, console
        finally:
            browser.close()
