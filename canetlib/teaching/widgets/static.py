"""Static HTML figures of the explorers, for pages without a kernel (the published book).

:func:`static_figure` draws every control state of an explorer with the explorer's own
``view`` (the method its live widget draws with), encodes the frames as JPEG within a byte
budget (:data:`STATIC_BUDGET`: a lower quality first, then only the first episodes, said under
the caption), and :meth:`StaticFigure.html` writes one self-contained HTML fragment: the same
controls, caption and colour key, and one inline script that swaps frame and caption when a
control moves. Nothing is requested from anywhere: the frames are ``data:`` URIs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from canetlib.teaching.widgets.frame import FRAME_FORMAT, encode_frame, frame_image

__all__ = [
    "STATIC_BUDGET", "STATIC_QUALITIES", "Control", "State", "StaticFigure", "control_states",
    "static_figure", "static_page", "write_static_page",
]

#: one value per control, in the explorer's order (a dropdown's value: its choice's index)
State = tuple[int, ...]
#: the most bytes the frames of one static figure may take (base64, as written into the page)
STATIC_BUDGET = 2_000_000
#: the JPEG qualities tried in turn; below the last, the figure keeps fewer episodes instead
STATIC_QUALITIES = (75, 60, 50)

_ids = itertools.count()


@dataclass(frozen=True)
class Control:
    """One control of an explorer: a slider over ``0..length-1`` or a dropdown of ``options``.

    A slider's ``lengths`` hold its length, or one length per option of the dropdown ``per``
    (the slider then goes back to 0 when that dropdown changes). ``shown=False``: a control
    the live widget hides (it keeps ``initial``); ``episodes``: the control that picks the
    episode, the one a static figure over budget shortens.
    """

    name: str
    lengths: tuple[int, ...] = (1,)
    options: tuple[str, ...] = ()
    per: str | None = None
    initial: int = 0
    shown: bool = True
    episodes: bool = False
    label: str = ""

    @property
    def title(self) -> str:
        """The visible label (the live widget's description)."""
        return self.label or self.name

    def length(self, controls: Sequence[Control], state: State) -> int:
        """How many values the control offers, given the values of the controls before it."""
        if self.options:
            return len(self.options)
        if self.per is None:
            return self.lengths[0]
        names = [c.name for c in controls]
        return self.lengths[state[names.index(self.per)]]


class Viewable(Protocol):
    """What an explorer offers a static figure: its controls and a view of each state."""

    static_name: str
    key: str
    keep_height: bool

    def static_controls(self) -> list[Control]: ...

    def view(self, state: State) -> tuple[Any, str]: ...


def control_states(controls: Sequence[Control]) -> list[State]:
    """Every state the controls can reach, in order (a dependent slider follows its dropdown)."""
    states: list[State] = [()]
    for control in controls:
        states = [s + (v,) for s in states for v in range(control.length(controls, s))]
    return states


@dataclass
class StaticFigure:
    """Every frame of an explorer, one per control state, and how to write it as HTML.

    ``states`` maps each state to the index of its frame in ``frames`` (JPEG bytes of
    ``sizes[i]`` pixels) and to its caption (HTML, without the colour ``key``).
    """

    name: str
    controls: list[Control]
    states: dict[State, tuple[int, str]]
    frames: list[bytes]
    sizes: list[tuple[int, int]]
    key: str
    initial: State
    note: str = ""
    reserve_height: bool = False
    quality: int = STATIC_QUALITIES[0]

    def caption(self, state: State) -> str:
        """The caption HTML of ``state`` with the colour key, as the live widget shows it."""
        return self.states[state][1] + self.key

    def frame_uri(self, index: int) -> str:
        """Frame ``index`` as a ``data:`` URI."""
        encoded = base64.b64encode(self.frames[index]).decode("ascii")
        return f"data:image/{FRAME_FORMAT};base64,{encoded}"

    def data(self) -> dict[str, Any]:
        """What the inline script reads (the initial frame's URI is the ``<img>``'s own)."""
        captions = sorted({c for _, c in self.states.values()})
        number = {c: i for i, c in enumerate(captions)}
        first = self.states[self.initial][0]
        return {
            "controls": [{"name": c.name, "lengths": list(c.lengths), "options": len(c.options),
                          "per": c.per, "initial": c.initial} for c in self.controls],
            "frames": ["" if i == first else self.frame_uri(i) for i in range(len(self.frames))],
            "sizes": [list(s) for s in self.sizes],
            "captions": captions,
            "states": {_state_key(s): [f, number[c]] for s, (f, c) in self.states.items()},
            "key": self.key,
        }

    def html(self) -> str:
        """The self-contained fragment: controls, caption, frame, note and the script."""
        payload = json.dumps(self.data(), separators=(",", ":")).replace("<", "\\u003c")
        digest = hashlib.sha1(payload.encode()).hexdigest()[:10]
        root = f"canet-static-{self.name}-{digest}-{next(_ids)}"
        first = self.states[self.initial][0]
        width, height = self.sizes[first]
        box_style = (f"min-height: {max(h for _, h in self.sizes)}px; " if self.reserve_height
                     else "")  # the script scales it to the frames' shown width
        controls = "".join(_control_html(root, c, self.controls) for c in self.controls
                           if c.shown)
        note = (f'<div class="canet-static-note" style="font-size: 0.9em; color: #555">'
                f"{html.escape(self.note)}</div>" if self.note else "")
        script = _SCRIPT.replace("__ROOT__", json.dumps(root)).replace("__DATA__", payload)
        return (
            f'<div class="canet-static-explorer" data-explorer="{self.name}" id="{root}" '
            f'data-state="{_state_key(self.initial)}">'
            f'<div class="canet-controls">{controls}</div>'
            f'<div class="canet-caption">{self.caption(self.initial)}</div>{note}'
            f'<div class="canet-frame-box" style="{box_style}width: 100%">'
            f'<img class="canet-frame" src="{self.frame_uri(first)}" width="{width}" '
            f'height="{height}" alt="{html.escape(self.name)} explorer frame" '
            f'style="max-width: 100%; height: auto"></div>'
            f"<script>{script}</script></div>"
        )


def _state_key(state: State) -> str:
    return ",".join(str(v) for v in state)


def _control_html(root: str, control: Control, controls: Sequence[Control]) -> str:
    """One labelled control: a ``<select>``, or an ``<input type="range">`` with its value."""
    cid = f"{root}-{control.name}"
    label = f'<label for="{cid}" style="min-width: 5em">{html.escape(control.title)}</label>'
    if control.options:
        options = "".join(f'<option value="{i}"{" selected" if i == control.initial else ""}>'
                          f"{html.escape(o)}</option>" for i, o in enumerate(control.options))
        widget = f'<select id="{cid}" data-control="{control.name}">{options}</select>'
    else:
        state = tuple(c.initial for c in controls)
        top = control.length(controls, state) - 1
        widget = (f'<input type="range" id="{cid}" data-control="{control.name}" min="0" '
                  f'max="{top}" step="1" value="{control.initial}">'
                  f'<output for="{cid}" data-readout="{control.name}">{control.initial}</output>')
    return (f'<div class="canet-control" style="display: flex; align-items: center; '
            f'gap: 0.6em; margin: 0.2em 0">{label}{widget}</div>')


_SCRIPT = """(function () {
  "use strict";
  var root = document.getElementById(__ROOT__);
  if (!root || root.getAttribute("data-ready") === "1") { return; }
  root.setAttribute("data-ready", "1");
  var data = __DATA__;
  var img = root.querySelector("img.canet-frame");
  var caption = root.querySelector(".canet-caption");
  var first = data.states[root.getAttribute("data-state")][0];
  data.frames[first] = img.getAttribute("src");
  var controls = data.controls.map(function (spec) {
    return {spec: spec, input: root.querySelector('[data-control="' + spec.name + '"]'),
            readout: root.querySelector('[data-readout="' + spec.name + '"]')};
  });
  function value(c) { return c.input ? parseInt(c.input.value, 10) : c.spec.initial; }
  function follow(choice) {
    controls.forEach(function (c) {
      if (c.spec.per === choice.spec.name && c.input) {
        c.input.max = String(c.spec.lengths[value(choice)] - 1);
        c.input.value = "0";
      }
    });
  }
  function show() {
    var key = controls.map(value).join(",");
    var entry = data.states[key];
    if (!entry) { return; }
    var size = data.sizes[entry[0]];
    img.setAttribute("src", data.frames[entry[0]]);
    img.setAttribute("width", String(size[0]));
    img.setAttribute("height", String(size[1]));
    caption.innerHTML = data.captions[entry[1]] + data.key;
    controls.forEach(function (c) { if (c.readout) { c.readout.textContent = c.input.value; } });
    root.setAttribute("data-state", key);
  }
  var box = root.querySelector(".canet-frame-box");
  function reserve() {
    // frames shrink to the box's width: reserve the tallest one's height at that scale
    if (!box.style.minHeight) { return; }
    var width = box.clientWidth, tallest = 0;
    data.sizes.forEach(function (s) {
      tallest = Math.max(tallest, s[1] * Math.min(1, width / s[0]));
    });
    if (width > 0) { box.style.minHeight = Math.ceil(tallest) + "px"; }
  }
  reserve();
  window.addEventListener("resize", reserve);
  controls.forEach(function (c) {
    if (!c.input) { return; }
    ["input", "change"].forEach(function (type) {
      c.input.addEventListener(type, function () {
        if (c.spec.options) { follow(c); }
        show();
      });
    });
  });
})();"""


def _b64_size(frames: Sequence[bytes]) -> int:
    """The bytes the frames take as base64."""
    return sum(4 * ((len(f) + 2) // 3) for f in frames)


def _encode(images: Sequence[Any], budget: int, qualities: Sequence[int]
            ) -> tuple[int, list[bytes]]:
    """The first quality whose frames fit ``budget`` (else the last) and the frames."""
    for quality in qualities:
        frames = [encode_frame(im, quality) for im in images]
        if _b64_size(frames) <= budget:
            break
    return quality, frames


def _episodes_that_fit(states: Sequence[State], frames: Sequence[bytes], pos: int,
                       budget: int) -> int:
    """The most leading episodes (value of control ``pos``) whose frames fit (at least one)."""
    for n in range(max(s[pos] for s in states) + 1, 1, -1):
        if _b64_size([f for s, f in zip(states, frames, strict=True) if s[pos] < n]) <= budget:
            return n
    return 1


def _shorten(control: Control, n: int) -> Control:
    """The episode control cut to its first ``n`` values."""
    return replace(control, lengths=tuple(min(v, n) for v in control.lengths),
                   initial=control.initial if control.initial < n else 0)


def _note(control: Control, n: int) -> str:
    """What a shortened static figure leaves out."""
    each = " of each set" if control.per is not None else ""
    return (f"This page shows the first {n} of the {max(control.lengths)} episodes{each} that "
            "the live widget offers; run the notebook to see all of them.")


def static_figure(explorer: Viewable, budget: int = STATIC_BUDGET,
                  qualities: Sequence[int] = STATIC_QUALITIES) -> StaticFigure:
    """Draw every control state of ``explorer`` and fit the frames into ``budget`` bytes."""
    controls = explorer.static_controls()
    states = control_states(controls)
    images, captions = [], []
    for state in states:  # one figure alive at a time
        fig, caption = explorer.view(state)
        images.append(frame_image(fig))
        captions.append(caption)
    quality, frames = _encode(images, budget, qualities)
    note = ""
    pos = next((i for i, c in enumerate(controls) if c.episodes), None)
    if _b64_size(frames) > budget and pos is not None:
        n = _episodes_that_fit(states, frames, pos, budget)
        note = _note(controls[pos], n)
        keep = [i for i, s in enumerate(states) if s[pos] < n]
        states, frames = [states[i] for i in keep], [frames[i] for i in keep]
        images, captions = [images[i] for i in keep], [captions[i] for i in keep]
        controls[pos] = _shorten(controls[pos], n)
    return StaticFigure(
        name=explorer.static_name, controls=controls,
        states={s: (i, c) for i, (s, c) in enumerate(zip(states, captions, strict=True))},
        frames=frames, sizes=[im.size for im in images], key=explorer.key,
        initial=tuple(c.initial for c in controls), note=note,
        reserve_height=explorer.keep_height, quality=quality)


def static_page(fragments: Sequence[str], title: str = "CANet explorers") -> str:
    """A whole HTML page holding the given static figures, one after another."""
    body = "\n".join(f'<section style="margin: 1.5em 0">{f}</section>' for f in fragments)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title></head>'
            f'<body style="font-family: sans-serif; max-width: 1300px; margin: 1em auto">\n'
            f"{body}\n</body></html>\n")


def write_static_page(path: str | Path, fragments: Sequence[str],
                      title: str = "CANet explorers") -> Path:
    """Write :func:`static_page` to ``path``; returns the path."""
    out = Path(path)
    out.write_text(static_page(fragments, title), encoding="utf-8")
    return out
