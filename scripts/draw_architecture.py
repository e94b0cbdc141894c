"""Draw the CANet architecture (our own drawing after the layout of the paper's Fig. 2).

Writes ``book/figures/canet-architecture.svg`` and ``.png`` (150 dpi), for the
book's chapters on dense comparison, iterative optimization and k shots:

    python scripts/draw_architecture.py [--out-dir book/figures]

Panel (a) is the one-shot network, panel (b) the k-shot attention fusion. Every
box names the paper's term and, in monospace, the canetlib class or function
behind it. The drawing uses inches as data units (the axes fill the figure),
so box sizes and font sizes can be reasoned about together. Only matplotlib is
needed; nothing from canetlib is imported.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "book" / "figures"
NAME = "canet-architecture"

#: figure size in inches (data units are inches too) and PNG resolution
WIDTH, HEIGHT = 10.5, 7.3
DPI = 150

#: font sizes in points (the PNG is shown at about its pixel width)
TITLE_PT, LABEL_PT, TEXT_PT = 11.5, 10, 9
MONO = "DejaVu Sans Mono"

#: calm palette: frozen grey, trained blue, data white, operations dashed
FROZEN = {"fc": "#e3e3e3", "ec": "#7a7a7a"}
TRAINED = {"fc": "#d6e6f5", "ec": "#3f6f9f"}
GROUP = {"fc": "#f0f6fc", "ec": "#3f6f9f"}
DATA = {"fc": "#ffffff", "ec": "#555555"}
OPERATION = {"fc": "#ffffff", "ec": "#555555", "ls": (0, (3, 2))}
INK = "#222222"
NOTE = "#444444"
ARROW = "#333333"
FEEDBACK = "#b35c00"
OBJECT = "#e0a040"
#: CSS fallbacks for readers without the DejaVu fonts (SVG text stays text)
FALLBACKS = {"DejaVu Sans": "Arial, Helvetica, sans-serif",
             "DejaVu Sans Mono": "Menlo, Consolas, monospace"}


# ----------------------------------------------------------------------------- primitives
def box(ax: Axes, x: float, y: float, w: float, h: float, style: dict[str, Any], *,
        gid: str | None = None, radius: float = 0.06, lw: float = 1.1, z: float = 1) -> None:
    """A rounded box; ``style`` holds face colour, edge colour and an optional dash."""
    ax.add_patch(FancyBboxPatch(
        (x, y), w, h, boxstyle=f"round,pad=0,rounding_size={radius}",
        fc=style["fc"], ec=style["ec"], ls=style.get("ls", "-"), lw=lw, zorder=z, gid=gid))


def label(ax: Axes, x: float, y: float, lines: Sequence[tuple[str, str]], *,
          ha: str = "center", va: str = "center", gap: float = 1.25, color: str = INK) -> None:
    """Stack lines of text at (x, y): ``va`` says whether y is their centre, top or bottom.

    Each line is ``(kind, text)`` with kind ``"title"`` (paper term), ``"cls"``
    (canetlib name, monospace), ``"text"`` or ``"note"`` (italic).
    """
    sizes = {"title": LABEL_PT, "cls": TEXT_PT, "text": TEXT_PT, "note": TEXT_PT}
    heights = [sizes[k] * gap / 72 for k, _ in lines]
    total = sum(heights)
    top = {"center": y + total / 2, "top": y, "bottom": y + total}[va]
    for (kind, text), h in zip(lines, heights):
        ax.text(x, top - h / 2, text, ha=ha, va="center", fontsize=sizes[kind],
                color=NOTE if kind == "note" else color,
                family=MONO if kind == "cls" else None,
                weight="bold" if kind == "title" else "normal",
                style="italic" if kind == "note" else "normal", zorder=5)
        top -= h


def module(ax: Axes, x: float, y: float, w: float, h: float, style: dict[str, Any],
           lines: Sequence[tuple[str, str]], *, gid: str | None = None,
           va: str = "center", pad: float = 0.1) -> None:
    """A box with its label stack (centred, or from the top when ``va="top"``)."""
    box(ax, x, y, w, h, style, gid=gid)
    ty = y + h / 2 if va == "center" else y + h - pad
    label(ax, x + w / 2, ty, lines, va=va)


def arrow(ax: Axes, points: Sequence[tuple[float, float]], *, color: str = ARROW,
          lw: float = 1.3) -> None:
    """An arrow along a polyline (the head on the last segment)."""
    for (x0, y0), (x1, y1) in pairwise(points[:-1]):
        ax.plot([x0, x1], [y0, y1], color=color, lw=lw, solid_capstyle="butt", zorder=3)
    ax.add_patch(FancyArrowPatch(points[-2], points[-1],
                                 arrowstyle="-|>,head_length=6,head_width=3.5",
                                 color=color, lw=lw, shrinkA=0, shrinkB=0, zorder=3))


def image_tile(ax: Axes, x: float, y: float, s: float, *, mask: bool = False) -> None:
    """A tiny stand-in picture: a sky/ground scene with an object, or its binary mask."""
    if mask:
        ax.add_patch(Rectangle((x, y), s, s, fc="#111111", ec=DATA["ec"], lw=1, zorder=2))
        ax.add_patch(Circle((x + 0.55 * s, y + 0.42 * s), 0.24 * s, fc="white", zorder=2.1))
        return
    ax.add_patch(Rectangle((x, y), s, s, fc="#cfe3f1", ec=DATA["ec"], lw=1, zorder=2))
    ax.add_patch(Rectangle((x, y), s, 0.3 * s, fc="#b9d7a8", lw=0, zorder=2.05))
    ax.add_patch(Circle((x + 0.55 * s, y + 0.42 * s), 0.24 * s, fc=OBJECT, ec="#9a6a1c",
                        lw=0.8, zorder=2.1))


def card_stack(ax: Axes, x: float, y: float, w: float, h: float, text: str, *,
               count: int = 3, step: float = 0.07) -> None:
    """k stacked white cards (data for the k shots), the front one labelled."""
    for i in reversed(range(count)):
        box(ax, x + i * step, y + i * step, w, h, DATA, radius=0.03, lw=0.9,
            z=2 + (count - i) * 0.01)
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=TEXT_PT,
            color=INK, zorder=5)


# ----------------------------------------------------------------------------- panels
def legend(ax: Axes, x: float, y: float) -> None:
    """Swatches: what the box colours and dashes mean."""
    items = [(FROZEN, "frozen"), (TRAINED, "trained"), (DATA, "data"),
             (OPERATION, "no weights")]
    for style, text in items:
        box(ax, x, y - 0.09, 0.28, 0.18, style, radius=0.03)
        ax.text(x + 0.36, y, text, ha="left", va="center", fontsize=TEXT_PT, color=INK)
        x += 0.36 + 0.075 * len(text) + 0.3


def one_shot_panel(ax: Axes) -> None:
    """Panel (a): support and query through the shared extractor, DCM, IOM, upsampling."""
    ys, yq = 5.85, 4.31           # centre lines of the support and query branches
    bottom, top = 3.55, 6.35      # extent of the boxes shared by both branches
    mask_line = 6.68              # the support mask travels above everything
    ax.text(0.15, 7.08, "(a)  One-shot CANet", fontsize=TITLE_PT, weight="bold", color=INK,
            va="center")
    legend(ax, 5.6, 7.08)

    # inputs: the support image in front of its mask, the query below
    s = 0.56
    image_tile(ax, 0.42, ys + 0.1, s, mask=True)
    image_tile(ax, 0.2, ys - 0.22, s)
    label(ax, 0.62, ys - 0.32, [("text", "support image"), ("text", "+ mask")], va="top")
    image_tile(ax, 0.34, yq - 0.31, 0.62)
    label(ax, 0.65, yq - 0.4, [("text", "query image")], va="top")

    # frozen backbone, shared by both branches
    bx, bw = 1.42, 1.55
    module(ax, bx, bottom, bw, top - bottom, FROZEN, [
        ("title", "Backbone"), ("cls", "ResNet50Backbone"), ("text", ""),
        ("text", "frozen, dilated:"), ("text", "block2 + block3"), ("text", "on the 1/8 grid"),
        ("text", ""), ("note", "one network,"), ("note", "shared weights"),
    ], gid="ResNet50Backbone")
    arrow(ax, [(0.2 + s, ys), (bx, ys)])
    arrow(ax, [(0.96, yq), (bx, yq)])
    label(ax, bx + bw / 2, bottom - 0.08, [
        ("note", "ResNet-50 in the paper;"), ("note", "offline models: EfficientNet-Lite0"),
        ("cls", "EfficientNetLiteBackbone"),
    ], va="top")

    # shared encoder
    ex, ew = 3.3, 1.2
    module(ax, ex, bottom, ew, top - bottom, TRAINED, [
        ("title", "Shared"), ("title", "encoder"), ("cls", "FeatureEncoder"), ("text", ""),
        ("text", "concat blocks,"), ("text", "3×3 conv"), ("text", "→ 256 ch"),
    ], gid="FeatureEncoder")
    arrow(ax, [(bx + bw, ys), (ex, ys)])
    arrow(ax, [(bx + bw, yq), (ex, yq)])
    ax.text(ex + ew + 0.05, ys + 0.04, "s", ha="left", va="bottom", fontsize=TEXT_PT,
            color=NOTE, style="italic")
    ax.text(ex + ew + 0.05, yq + 0.04, "q", ha="left", va="bottom", fontsize=TEXT_PT,
            color=NOTE, style="italic")

    # support branch: masked average pooling -> prototype
    mx, mw, mh = 4.78, 2.08, 0.6
    module(ax, mx, ys - mh / 2, mw, mh, OPERATION, [
        ("title", "Masked average pooling"), ("cls", "masked_average_pooling"),
    ], gid="masked_average_pooling")
    arrow(ax, [(ex + ew, ys), (mx, ys)])
    # the mask goes over the extractor straight to the pooling
    arrow(ax, [(0.8, ys + 0.1 + s), (0.8, mask_line), (mx + 0.3, mask_line),
               (mx + 0.3, ys + mh / 2)])
    ax.text(2.55, mask_line, "mask, resized to the 1/8 grid", ha="center", va="center",
            fontsize=TEXT_PT, color=NOTE, style="italic",
            bbox={"fc": "white", "ec": "none", "pad": 1.5}, zorder=4)

    # dense comparison module: title, pairing, comparison conv
    dx, dy, dw = mx, bottom, mw
    conv_y, conv_h, pair_y, pair_h = dy + 0.08, 0.32, dy + 0.52, 0.62
    dh = pair_y + pair_h + 0.5 - dy
    box(ax, dx, dy, dw, dh, GROUP, gid="DenseComparison")
    label(ax, dx + 0.12, dy + dh - 0.07, [("title", "Dense comparison"),
                                         ("cls", "DenseComparison")], ha="left", va="top")
    module(ax, dx + 0.12, pair_y, dw - 0.24, pair_h, OPERATION, [
        ("text", "tile p over the grid,"), ("text", "pair with q: [q, p]"),
        ("cls", "DenseComparison.pair"),
    ])
    module(ax, dx + 0.12, conv_y, dw - 0.24, conv_h, TRAINED, [
        ("text", "comparison conv 3×3"),
    ])
    px = dx + dw - 0.24
    arrow(ax, [(px, ys - mh / 2), (px, pair_y + pair_h)])
    label(ax, px - 0.08, (ys - mh / 2 + dy + dh) / 2, [("text", "prototype p (256-d)")],
          ha="right")
    arrow(ax, [(ex + ew, yq), (dx + 0.12, yq)])
    arrow(ax, [(dx + dw / 2, pair_y), (dx + dw / 2, conv_y + conv_h)])
    label(ax, dx + dw / 2, bottom - 0.08, [
        ("note", "[q, p] in the paper;"), ("note", "[q·p, |q − p|] with"),
        ("cls", "pairing='relational'"),
    ], va="top")

    # iterative optimization module
    ix, iw = 7.08, 1.72
    box(ax, ix, bottom, iw, top - bottom, GROUP, gid="IterativeOptimization")
    label(ax, ix + iw / 2, top - 0.07, [("title", "Iterative"), ("title", "optimization"),
                                       ("cls", "IterativeOptimization")], va="top")
    inner = [  # (height, lines) from top to bottom
        (0.46, [("text", "x + F(x, $y_{t-1}$)"), ("text", "concat, two 3×3 conv")]),
        (0.32, [("text", "2 residual blocks")]),
        (0.46, [("text", "ASPP"), ("text", "rates 6, 12, 18 + pool")]),
        (0.32, [("text", "1×1 conv → 2 maps")]),
    ]
    y = top - 0.66
    boxes = []
    for h, lines in inner:
        y -= h
        module(ax, ix + 0.1, y, iw - 0.2, h, TRAINED, lines)
        boxes.append((y, h))
        y -= 0.13
    for (y0, _h0), (y1, h1) in pairwise(boxes):
        arrow(ax, [(ix + iw / 2, y0), (ix + iw / 2, y1 + h1)])
    # x from the comparison conv enters the residual unit
    f_y, f_h = boxes[0]
    join = (dx + dw + ix) / 2
    arrow(ax, [(dx + dw - 0.12, conv_y + conv_h / 2), (join, conv_y + conv_h / 2),
               (join, f_y + f_h / 2), (ix + 0.1, f_y + f_h / 2)])
    ax.text(dx + dw + 0.03, conv_y + conv_h / 2 + 0.04, "x", ha="left", va="bottom",
            fontsize=TEXT_PT, color=NOTE, style="italic")

    # feedback: softmax of the output back into F
    c_y, c_h = boxes[-1]
    loop_x = ix + iw + 0.16
    arrow(ax, [(ix + iw - 0.1, c_y + c_h / 2), (loop_x, c_y + c_h / 2), (loop_x, f_y + f_h / 2),
               (ix + iw - 0.1, f_y + f_h / 2)], color=FEEDBACK)
    label(ax, loop_x + 0.1, f_y + f_h / 2 + 0.1, [
        ("text", "softmax → $y_{t-1}$:"), ("text", "previous prediction"),
        ("text", "(empty at t = 0);"), ("text", "mask dropout"), ("text", "in training"),
    ], ha="left", va="top", color=FEEDBACK)

    # output: logits on the 1/8 grid, upsampled to the query's size
    ox, ow, oy, oh = loop_x + 0.1, 1.4, bottom - 1.08, 0.66
    arrow(ax, [(ix + iw / 2, c_y), (ix + iw / 2, oy + oh / 2), (ox, oy + oh / 2)])
    label(ax, ix + iw / 2 + 0.08, bottom - 0.06, [
        ("text", "foreground /"), ("text", "background logits,"), ("text", "1/8 grid"),
    ], ha="left", va="top")
    module(ax, ox, oy, ow, oh, OPERATION, [("text", "softmax, upsample"),
                                          ("text", "to query size"), ("cls", "resize_maps")])
    tile = 0.6
    arrow(ax, [(ox + ow / 2, oy + oh), (ox + ow / 2, c_y + 0.02)])
    image_tile(ax, ox + (ow - tile) / 2, c_y + 0.04, tile, mask=True)
    label(ax, ox + ow / 2, c_y + tile + 0.12, [("text", "query mask")], va="bottom")


def k_shot_panel(ax: Axes) -> None:
    """Panel (b): attention weights over k supports, weighted sum into the IOM."""
    top = 1.98
    ax.plot([0.15, WIDTH - 0.15], [top + 0.3, top + 0.3], color="#bbbbbb", lw=0.8)
    ax.text(0.15, top, "(b)  k shots: attention fusion", fontsize=TITLE_PT, weight="bold",
            color=INK, va="center")
    yc, ya = 1.45, 0.6   # comparison row, attention row

    card_stack(ax, 0.25, 0.9, 1.3, 0.5, "$[q, p_i]$")
    label(ax, 0.95, 0.55, [("text", "one pair per shot,"), ("text", "i = 1 … k")])

    # comparison conv, as in (a), on every pair
    module(ax, 2.15, yc - 0.27, 1.9, 0.54, TRAINED, [("text", "comparison conv 3×3"),
                                                    ("cls", "DenseComparison")])
    arrow(ax, [(1.69, yc), (2.15, yc)])
    arrow(ax, [(4.05, yc), (4.5, yc)])
    card_stack(ax, 4.5, yc - 0.27, 0.65, 0.42, "$x_i$")

    # attention branch, parallel to the comparison conv
    ab_x, ab_w = 2.15, 3.9
    box(ax, ab_x, ya - 0.36, ab_w, 0.72, TRAINED, gid="AttentionFusion")
    label(ax, ab_x + 0.12, ya, [("title", "Attention branch"), ("cls", "AttentionFusion")],
          ha="left")
    label(ax, ab_x + ab_w - 0.12, ya, [
        ("text", "3×3 conv (256) → 3×3 max-pool"),
        ("text", "→ 3×3 conv (1) → global avg pool"),
    ], ha="right")
    arrow(ax, [(1.69, 1.12), (1.9, 1.12), (1.9, ya), (ab_x, ya)])

    # softmax over the shots, weighted sum, IOM
    sx, sw = 6.42, 1.05
    arrow(ax, [(ab_x + ab_w, ya), (sx, ya)])
    ax.text(ab_x + ab_w + 0.06, ya + 0.05, "$\\lambda_i$", ha="left", va="bottom",
            fontsize=LABEL_PT, color=INK)
    module(ax, sx, ya - 0.3, sw, 0.6, OPERATION, [("text", "softmax"),
                                                 ("text", "over k shots")])
    wx, r = 7.98, 0.2
    ax.add_patch(Circle((wx, yc), r, fc="white", ec=DATA["ec"], ls=(0, (3, 2)), lw=1.1,
                        zorder=3))
    ax.text(wx, yc, "Σ", ha="center", va="center", fontsize=LABEL_PT, color=INK, zorder=5)
    arrow(ax, [(5.29, yc), (wx - r, yc)])
    arrow(ax, [(sx + sw, ya), (wx, ya), (wx, yc - r)])
    ax.text(sx + sw + 0.06, ya - 0.05, "$\\hat\\lambda_1 … \\hat\\lambda_k$", ha="left",
            va="top", fontsize=LABEL_PT, color=INK)
    ax.text(6.3, yc + 0.08, "weighted sum", ha="right", va="bottom", fontsize=TEXT_PT,
            color=NOTE, style="italic")
    ax.text(6.37, yc + 0.06, "$\\hat\\lambda_1 x_1 + \\dots + \\hat\\lambda_k x_k$",
            ha="left", va="bottom", fontsize=TEXT_PT, color=INK)
    iox = 8.55
    module(ax, iox, yc - 0.36, WIDTH - 0.15 - iox, 0.72, TRAINED, [
        ("title", "IOM, as in (a)"), ("cls", "IterativeOptimization")])
    arrow(ax, [(wx + r, yc), (iox, yc)])


def draw() -> plt.Figure:
    """The whole figure (both panels) on one inch-scaled axes (fonts: see :func:`main`)."""
    fig = plt.figure(figsize=(WIDTH, HEIGHT))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.set_aspect("equal")
    ax.axis("off")
    one_shot_panel(ax)
    k_shot_panel(ax)
    return fig


def main(out_dir: Path | str = DEFAULT_OUT) -> tuple[Path, Path]:
    """Draw the figure and write ``canet-architecture.svg`` and ``.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    svg, png = out / f"{NAME}.svg", out / f"{NAME}.png"
    # svg.fonttype "none": labels stay searchable text; fixed salt and no date: stable output
    style = {"svg.fonttype": "none", "svg.hashsalt": NAME, "font.family": "DejaVu Sans",
             "mathtext.fontset": "dejavusans"}
    with plt.rc_context(style):
        fig = draw()
        fig.savefig(svg, metadata={"Date": None}, facecolor="white")
        fig.savefig(png, dpi=DPI, metadata={"Software": None}, facecolor="white")
    plt.close(fig)
    svg.write_text(with_font_fallbacks(svg.read_text(encoding="utf-8")), encoding="utf-8")
    return svg, png


def with_font_fallbacks(svg_text: str) -> str:
    """Append generic CSS fallbacks to every ``font-family`` naming a DejaVu font,
    so the labels keep a sans-serif / monospace look where DejaVu is not installed."""
    def extend(match: re.Match[str]) -> str:
        return f"{match.group(0)}, {FALLBACKS[match.group(1)]}"
    return re.sub(r"'(DejaVu Sans(?: Mono)?)'", extend, svg_text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=str(DEFAULT_OUT), help="folder for the .svg and .png")
    args = ap.parse_args()
    for path in main(args.out_dir):
        print(path)
