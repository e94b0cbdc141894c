"""The published book with the network blocked: every page loads from the build alone (slow).

Builds the book as README command 1 does (``jupyter-book build --all -W``, into a temporary
folder), serves the HTML from 127.0.0.1 and opens every page in headless Chromium with every
request to another host aborted and recorded. Fails on a request that tried to leave, a
failed request (4xx/5xx or aborted), a console error, raw TeX delimiters left in the text
(MathJax missing), an empty output cell (or one showing only a widget's text repr), or a page
whose HTML and what it loads exceed 3 MB as a server that gzips text sends them. Then moves
every control of each static explorer figure (``.canet-static-explorer``) and checks that its
frame and caption change.

Run with ``python -m pytest -m slow tests/test_published_html.py``. Debian's ``chromium`` is
used (``CHROMIUM`` names another binary; no playwright browser download). Set
``CANET_BROWSER_SCREENSHOTS`` to a folder to keep a full-page screenshot of every page. Where
chromium, playwright or the book's packages (``canetlib[book]``) are missing the test skips,
except under ``CI``, where it fails.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from browser import LAUNCH_ARGS, chromium, require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# a page's HTML and everything it loads, as sent by a server that compresses text (the theme's
# icon script and MathJax alone are 2.65 MB on disk, 0.81 MB sent)
MAX_PAGE_BYTES = 3_000_000
COMPRESSED = {".html", ".js", ".css", ".svg", ".json", ".txt", ".xml", ".map", ".ttf"}
TEX_DELIMITERS = ("\\(", "\\[", "$$")

# text nodes outside code, scripts and typeset math that still hold a TeX delimiter
RAW_TEX_JS = """delimiters => {
  const skip = "pre, code, script, style, noscript, textarea, mjx-container";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement || node.parentElement.closest(skip)) continue;
    const text = node.textContent;
    for (const d of delimiters) {
      const i = text.indexOf(d);
      if (i >= 0) found.push(text.slice(Math.max(0, i - 30), i + 50).trim());
    }
  }
  return found;
}"""

# output cells with no text, no loaded image and no figure, or only a widget's text repr
EMPTY_OUTPUTS_JS = """() => {
  const widgetRepr = /^(VBox|HBox|Box|GridBox|Tab|Accordion|Output|Image|HTML|IntSlider)\\(/;
  const loaded = i => i.complete && i.naturalWidth > 0;
  const drawn = s => !s.closest("button");  // not the copy button's icon
  const media = o => Array.from(o.querySelectorAll("img")).some(loaded)
    || Array.from(o.querySelectorAll("svg")).some(drawn)
    || o.querySelector("canvas, video, figure") !== null;
  // a collapsed cell (tag hide-cell / hide-output) renders its output only when opened
  const folded = o => o.closest(".tag_hide-cell, .tag_hide-output") !== null;
  const present = o => o.querySelector("img, svg, canvas, video, figure") !== null;
  return Array.from(document.querySelectorAll(".cell_output")).filter(o => {
    const text = (folded(o) ? o.textContent : o.innerText).trim();
    const shown = folded(o) ? present(o) : media(o);
    return (!text && !shown) || (widgetRepr.test(text) && !shown);
  }).map(o => (o.closest(".cell") || o).id || o.innerText.trim().slice(0, 80) || "(empty)");
}"""

MATHJAX_DONE_JS = """async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) await mj.startup.promise;
  await document.fonts.ready;
}"""

# an explorer's frame and caption; the caption as HTML: moving the iteration slider moves the
# bold mark along the same line of IoUs
EXPLORER_STATE_JS = """root => {
  const img = root.querySelectorAll("img.canet-frame");
  const cap = root.querySelectorAll("div.canet-caption");
  return {frames: img.length, captions: cap.length,
          src: img.length ? img[0].getAttribute("src") : null,
          caption: cap.length ? cap[0].innerHTML : null};
}"""

CHANGED_JS = """([root, before]) => {
  const img = root.querySelector("img.canet-frame"), cap = root.querySelector("div.canet-caption");
  return img && cap && img.getAttribute("src") !== before.src
    && cap.innerHTML !== before.caption;
}"""


@dataclass
class PageReport:
    """What one page did in the browser."""

    name: str
    left: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    raw_tex: list[str] = field(default_factory=list)
    empty_outputs: list[str] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)
    size: int = 0  # bytes sent, text gzipped
    disk_size: int = 0
    explorers: int = 0
    explorer_problems: list[str] = field(default_factory=list)


def _require_tools() -> None:
    """Skip where a tool is missing; under CI, fail instead."""
    require("jupyter_book", "sphinx-mathjax-offline")


def _build_book(out: Path) -> Path:
    """README command 1's build, into ``out``; the folder of its HTML."""
    code = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "build", "--all", "-W", "--path-output", str(out), "."]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                         check=False)
    assert run.returncode == 0, f"the book build failed:\n{(run.stdout + run.stderr)[-6000:]}"
    return out / "_build" / "html"


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files, without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Site:
    """The built book served on 127.0.0.1."""

    root: Path
    base: str

    def url(self, page: Path) -> str:
        return f"{self.base}/{page.relative_to(self.root).as_posix()}"

    def file(self, url: str) -> Path | None:
        path = self.root / unquote(urlsplit(url).path).lstrip("/")
        return path if path.is_file() else None


@cache
def _sizes(path: Path) -> tuple[int, int]:
    """Bytes of a file on disk, and as a server that gzips text (GitHub Pages does) sends it."""
    data = path.read_bytes()
    sent = len(gzip.compress(data, 6)) if path.suffix in COMPRESSED else len(data)
    return len(data), min(sent, len(data))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _require_tools()
    html = _build_book(tmp_path_factory.mktemp("published-book"))
    server = ThreadingHTTPServer((HOST, 0), partial(_QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(html, f"http://{HOST}:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def _pages(root: Path) -> list[Path]:
    """Every page of the build; the theme's template snippets in _static are not pages."""
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)


def _browser_probe(url: str) -> bool:
    """The browser's own /favicon.ico request (the book declares no icon): no page asks it."""
    return urlsplit(url).path == "/favicon.ico"


def _watch(page: Any, report: PageReport) -> None:
    """Record the page's failed requests, console errors and loaded resources."""
    def on_response(response: Any) -> None:
        report.loaded.add(response.url)
        if response.status >= 400 and not _browser_probe(response.url):
            report.failed.append(f"{response.status} {response.url}")

    def on_console(message: Any) -> None:
        if message.type == "error" and not _browser_probe(message.location.get("url", "")):
            report.console.append(message.text)

    page.on("response", on_response)
    page.on("requestfailed", lambda r: report.failed.append(f"{r.failure} {r.url}"))
    page.on("console", on_console)
    page.on("pageerror", lambda e: report.console.append(f"uncaught: {e}"))


def _block_other_hosts(context: Any, report: PageReport) -> None:
    """Abort and record every request to a host other than 127.0.0.1."""
    def route(r: Any) -> None:
        if urlsplit(r.request.url).hostname == HOST:
            r.continue_()
        else:
            report.left.append(r.request.url)
            r.abort("blockedbyclient")

    context.route("**/*", route)


def _move(control: Any) -> str | None:
    """Move one control to a neighbouring value, as a reader would; why it could not, or None."""
    if control.evaluate("e => e.tagName") == "SELECT":
        values = control.evaluate("e => Array.from(e.options).map(o => o.value)")
        others = [v for v in values if v != control.input_value()]
        if not others:
            return "a select with a single option"
        control.select_option(others[0])
        return None
    lo, hi, value = control.evaluate("e => [Number(e.min), Number(e.max), Number(e.value)]")
    if lo >= hi:
        return f"a slider with nothing to slide (min {lo}, max {hi})"
    control.press("ArrowRight" if value < hi else "ArrowLeft")
    return None


def _check_explorer(page: Any, root: Any, label: str) -> list[str]:
    """Problems of one static explorer: each control must change its frame and caption."""
    state = root.evaluate(EXPLORER_STATE_JS)
    if state["frames"] != 1 or state["captions"] != 1:
        counts = f"{state['frames']} img.canet-frame, {state['captions']} div.canet-caption"
        return [f"{label}: {counts}"]
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    controls = root.locator("input[type=range][data-control], select[data-control]")
    if controls.count() == 0:
        return [f"{label}: no control"]
    problems = []
    for i in range(controls.count()):
        control = controls.nth(i)
        name = f"{label} control {control.get_attribute('data-control')!r}"
        before = root.evaluate(EXPLORER_STATE_JS)
        why = _move(control)
        if why is not None:
            problems.append(f"{name}: {why}")
            continue
        try:
            page.wait_for_function(CHANGED_JS, arg=[root.element_handle(), before], timeout=3000)
        except PlaywrightTimeout:
            after = root.evaluate(EXPLORER_STATE_JS)
            problems.append(f"{name}: frame changed {after['src'] != before['src']}, caption "
                            f"changed {after['caption'] != before['caption']}")
    return problems


def _inspect(page: Any, site: Site, report: PageReport) -> None:
    """The checks on a loaded page: math, outputs, weight, explorers."""
    report.raw_tex = page.evaluate(RAW_TEX_JS, list(TEX_DELIMITERS))
    report.empty_outputs = page.evaluate(EMPTY_OUTPUTS_JS)
    files = {site.file(u) for u in report.loaded if urlsplit(u).hostname == HOST}
    sizes = [_sizes(f) for f in files if f is not None]
    report.disk_size, report.size = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
    roots = page.locator(".canet-static-explorer")
    report.explorers = roots.count()
    for i in range(report.explorers):
        report.explorer_problems += _check_explorer(page, roots.nth(i), f"explorer {i + 1}")


def _visit(browser: Any, site: Site, path: Path, shots: Path | None) -> PageReport:
    """Open one page in a fresh context (empty cache), network blocked, and inspect it."""
    report = PageReport(path.relative_to(site.root).as_posix())
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    _block_other_hosts(context, report)
    page = context.new_page()
    _watch(page, report)
    try:
        page.goto(site.url(path), wait_until="load")
        page.wait_for_load_state("networkidle")  # index.html redirects to the intro
        page.evaluate(MATHJAX_DONE_JS)
        page.wait_for_load_state("networkidle")  # MathJax's fonts
        if shots is not None:
            name = path.relative_to(site.root).with_suffix("").as_posix().replace("/", "_")
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        _inspect(page, site, report)
    finally:
        context.close()
    return report


@pytest.fixture(scope="module")
def reports(site: Site) -> dict[str, PageReport]:
    """Every page, visited in sequence by one headless Chromium."""
    from playwright.sync_api import sync_playwright

    folder = os.environ.get("CANET_BROWSER_SCREENSHOTS")
    shots = Path(folder) if folder else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True,
                                    args=LAUNCH_ARGS)
        try:
            found = [_visit(browser, site, path, shots) for path in _pages(site.root)]
        finally:
            browser.close()
    for r in found:
        print(f"{r.name}: {r.size / 1e6:.2f} MB sent ({r.disk_size / 1e6:.2f} MB on disk), "
              f"{len(r.loaded)} requests, {r.explorers} explorer(s)")
    return {r.name: r for r in found}


def _bad(reports: dict[str, PageReport], attr: str) -> dict[str, Any]:
    return {name: getattr(r, attr) for name, r in reports.items() if getattr(r, attr)}


def test_every_page_of_the_book_is_opened(reports: dict[str, PageReport]) -> None:
    assert "book/intro.html" in reports and "book/notation.html" in reports
    assert len(reports) >= 15, sorted(reports)


def test_no_request_leaves_any_page(reports: dict[str, PageReport]) -> None:
    assert not _bad(reports, "left")


def test_no_request_fails(reports: dict[str, PageReport]) -> None:
    assert not _bad(reports, "failed")


def test_no_console_error(reports: dict[str, PageReport]) -> None:
    assert not _bad(reports, "console")


def test_math_is_typeset_offline(reports: dict[str, PageReport]) -> None:
    assert not _bad(reports, "raw_tex")


def test_no_output_cell_is_empty(reports: dict[str, PageReport]) -> None:
    assert not _bad(reports, "empty_outputs")


def test_every_page_with_what_it_loads_stays_under_3_mb(reports: dict[str, PageReport]) -> None:
    heavy = {name: r.size for name, r in reports.items() if r.size > MAX_PAGE_BYTES}
    assert not heavy
    assert all(r.size > 0 for r in reports.values())  # the sizes were measured


def test_every_page_document_stays_under_3_mb_uncompressed(site: Site) -> None:
    """The HTML file itself, frames of its static explorers included, even where nothing
    compresses it (a page saved for offline reading); the theme's and MathJax's shared files
    come on top of it once, cached for every other page."""
    heavy = {p.name: _sizes(p)[0] for p in _pages(site.root) if _sizes(p)[0] > MAX_PAGE_BYTES}
    assert not heavy


def test_every_static_explorer_control_changes_frame_and_caption(
        reports: dict[str, PageReport]) -> None:
    assert not _bad(reports, "explorer_problems")
