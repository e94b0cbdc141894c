"""What every explorer shares: one frame redrawn on each change, a caption, the layout.

An :class:`Explorer` keeps its state on the instance (no globals) and shows
each frame (:func:`canetlib.teaching.widgets.frame.render_frame`) in an
``ipywidgets.Image`` at its natural pixel size, under its controls and a
caption that ends with the explorer's colour key; ``frames_drawn`` and
``frame_size`` let a test move every control headless and check what changed.
Each explorer draws a control state with one method, :meth:`Explorer.view`, which its
live widget and its static HTML figure (:mod:`canetlib.teaching.widgets.static`, for pages without a
kernel) both call; displayed, an explorer offers both (:meth:`Explorer._repr_mimebundle_`).
The helpers here build the sliders and the caption's episode heading.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from canetlib.teaching.widgets.frame import FRAME_FORMAT, pixel_size, render_frame
from canetlib.teaching.widgets.runs import Item
from canetlib.teaching.widgets.static import (
    Control,
    State,
    StaticFigure,
    static_figure,
    write_static_page,
)

__all__ = [
    "Explorer",
    "class_label",
    "episode_heading",
    "has_ground_truth",
    "slider",
    "source_class_names",
]


class Explorer:
    """Common parts: a caption and one image widget redrawn on every change.

    ``image`` shows each frame at its natural pixel size (``frame_size``,
    width and height of the last frame) inside ``frame_box``; with
    ``keep_height`` (explorers whose frames differ in size) the box's minimum
    height is the tallest frame shown or reserved so far, so the widget does
    not jump. ``key`` is the colour key appended to every caption. Subclasses
    build ``widget`` with :meth:`_layout`, list their controls in
    :meth:`static_controls`, draw a state in :meth:`view` and show the current
    one in :meth:`_draw`, which every observed control calls through :meth:`_on_change`.
    """

    key: str = ""
    #: reserve the tallest frame's height (on for frames of different sizes)
    keep_height: bool = False
    #: the static figure's ``data-explorer`` name
    static_name: str = ""
    widget: Any
    _static: StaticFigure | None = None
    _static_html: str | None = None

    def __init__(self) -> None:
        import ipywidgets as w

        self.image = w.Image(format=FRAME_FORMAT,
                             layout=w.Layout(max_width="100%", height="auto", flex="0 1 auto"))
        self.frame_box = w.Box([self.image],
                               layout=w.Layout(width="100%", align_items="flex-start"))
        self.caption = w.HTML()
        self.frames_drawn = 0
        self.frame_size: tuple[int, int] = (0, 0)

    def _layout(self, controls: Sequence[Any]) -> Any:
        """The explorer's box: controls, caption, frame; nothing stretched to the full width."""
        import ipywidgets as w

        return w.VBox([*controls, self.caption, self.frame_box],
                      layout=w.Layout(align_items="flex-start"))

    def _reserve_height(self, pixels: int) -> None:
        """Make the frame area at least ``pixels`` high from now on (it never shrinks)."""
        current = self.frame_box.layout.min_height
        have = int(current[:-2]) if current else 0
        if pixels > have:
            self.frame_box.layout.min_height = f"{int(pixels)}px"

    def _show(self, fig: Any, caption: str) -> None:
        """Render ``fig`` into the image at its natural size; caption it (plus the key)."""
        frame = render_frame(fig)
        width, height = pixel_size(frame)
        with self.image.hold_sync():
            self.image.value = frame
            # the <img> attributes give the browser the aspect ratio before it decodes
            self.image.width, self.image.height = str(width), str(height)
            self.image.layout.width = f"{width}px"
        if self.keep_height:
            self._reserve_height(height)
        self.frame_size = (width, height)
        self.caption.value = caption + self.key
        self.frames_drawn += 1

    def _on_change(self, change: dict[str, Any]) -> None:
        del change
        self._draw()

    def _draw(self) -> None:
        raise NotImplementedError

    def static_controls(self) -> list[Control]:
        """The explorer's controls, in the order of a :data:`~canetlib.teaching.widgets.static.State`."""
        raise NotImplementedError

    def view(self, state: State) -> tuple[Any, str]:
        """The figure and the caption (HTML, without the key) of one control state."""
        raise NotImplementedError

    def static_figure(self) -> StaticFigure:
        """Every frame of the explorer, drawn once (see :mod:`canetlib.teaching.widgets.static`)."""
        if self._static is None:
            self._static = static_figure(self)
        return self._static

    def static_html(self) -> str:
        """The self-contained HTML/JS figure that moves without a kernel (written once)."""
        if self._static_html is None:
            self._static_html = self.static_figure().html()
        return self._static_html

    def write_static_html(self, path: str | Path) -> Path:
        """Write a whole HTML page holding :meth:`static_html` to ``path``."""
        return write_static_page(path, [self.static_html()])

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The live widget's view (and its text) plus the static figure as ``text/html``.

        On Colab only the widget's view: there the live widget is what a reader wants, and
        Colab's front end is not documented to prefer a widget view over HTML.
        """
        del include, exclude
        bundle = widget_view(self.widget)
        if "google.colab" not in sys.modules:
            bundle["text/html"] = self.static_html()
        return bundle


def widget_view(widget: Any) -> dict[str, Any]:
    """The mime bundle that shows ``widget`` live: what ipywidgets 7 and 8 both display.

    ipywidgets 8 gives it as ``_repr_mimebundle_``; ipywidgets 7 (Colab's) has no such
    method, so the bundle is written here in the widget-view format both versions use.
    Empty once the widget is closed (it has no model then).
    """
    model_id = getattr(widget, "model_id", None)
    if model_id is None:
        return {}
    own = getattr(widget, "_repr_mimebundle_", None)
    if callable(own):
        return dict(own() or {})
    return {
        "text/plain": repr(widget),
        "application/vnd.jupyter.widget-view+json": {
            "version_major": 2, "version_minor": 0, "model_id": model_id},
    }


def slider(description: str, count: int) -> Any:
    """An integer slider over ``0..count-1`` that fires when released."""
    import ipywidgets as w

    return w.IntSlider(value=0, min=0, max=max(count - 1, 0), description=description,
                       continuous_update=False)


def class_label(item: Item, names: Sequence[str] | None) -> str:
    """``class 3 (cat)``, ``class 3`` without names, ``class ?`` without a class id."""
    cid = item.get("class_id")
    if cid is None:
        return "class ?"
    cid = int(cid)
    if names is not None and 0 < cid <= len(names):
        return f"class {cid} ({names[cid - 1]})"
    return f"class {cid}"


def source_class_names(episodes: Any) -> Sequence[str] | None:
    """The class names of a dataset's source (ids ``1..n``), if it has any."""
    names = getattr(getattr(episodes, "source", None), "class_names", None)
    return tuple(names) if names else None


def episode_heading(i: int, item: Item, names: Sequence[str] | None) -> str:
    """The start of a caption: ``<b>episode i</b>, class ...`` (HTML)."""
    return f"<b>episode {i}</b>, {html.escape(class_label(item, names))}"


def has_ground_truth(episodes: Sequence[Item]) -> bool:
    """Whether any of the episodes has a query mask."""
    return any(item.get("query_mask") is not None for item in episodes)
