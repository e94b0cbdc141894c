"""Scene layouts: where each glyph of an image goes, as a pixel-free description.

A :class:`SceneLayout` is the image size and its objects back to front; a
:class:`SceneObject` is one glyph instance (class, glyph, size, rotation,
flip, centre and colour jitter). :func:`scene_layout` draws the layout of a
world image (its primary class and distractors, placed with little overlap),
:func:`single_object_layout` that of a pretraining sample. Every draw comes
from the ``rng`` passed in, in a fixed order, so a layout is a pure function
of its seed. :mod:`canetlib.data.world.render` turns layouts into pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from canetlib.data.world.glyphs import render_glyph

Box = tuple[float, float, float, float]

# --- scene parameters ---------------------------------------------------------------------
_P_TWO_TARGETS = 0.3  # probability that the primary class has 2 instances
_DISTRACTORS = (2, 3)  # inclusive range of distractor objects of other classes
_OBJECT_SIZE = (0.28, 0.5)  # longest glyph side, as a fraction of min(H, W)
_MAX_ROTATION = 25.0  # degrees
_HUE_JITTER = 0.04  # fraction of the hue circle
_SAT_JITTER = (0.8, 1.2)
_VAL_JITTER = (0.85, 1.15)
_MAX_OVERLAP = 0.25  # intersection / smaller box area allowed between object boxes
_PLACEMENT_TRIES = 12


# --- descriptions -------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneObject:
    """One glyph instance of a scene (pixel-free description)."""

    class_id: int  # 1..20 in the world, a pretraining label in the pretraining pool
    glyph: str  # hex code point
    size: float  # longest glyph side before rotation, px
    angle: float  # degrees, counter-clockwise
    flip: bool  # horizontal mirror
    cx: float  # centre, px
    cy: float
    hue: float  # hue shift, fraction of the circle
    sat: float  # saturation factor
    val: float  # brightness factor
    #: a new colour for each colour region of the glyph, or None to keep it (see recolour.py)
    region_colours: tuple[tuple[float, float, float] | None, ...] = ()


@dataclass(frozen=True)
class SceneLayout:
    """Image size and the objects of one scene, back to front."""

    height: int
    width: int
    objects: tuple[SceneObject, ...]


# --- drawing a layout ---------------------------------------------------------------------
def _draw_object_params(
    rng: np.random.Generator, class_id: int, glyph: str, size: float
) -> dict[str, float | bool | int | str]:
    """The random look of one object: rotation, flip and colour jitter."""
    return {
        "class_id": class_id,
        "glyph": glyph,
        "size": size,
        "angle": float(rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)),
        "flip": bool(rng.random() < 0.5),
        "hue": float(rng.uniform(-_HUE_JITTER, _HUE_JITTER)),
        "sat": float(rng.uniform(*_SAT_JITTER)),
        "val": float(rng.uniform(*_VAL_JITTER)),
    }


def scaled_size(glyph: str, size: float) -> tuple[int, int]:
    """(width, height) of ``glyph`` scaled so that its longest side is ``size`` px."""
    gh, gw = render_glyph(glyph).shape[:2]
    f = size / max(gh, gw)
    return max(1, round(gw * f)), max(1, round(gh * f))


def _rotated_box(w: int, h: int, angle: float) -> tuple[float, float]:
    a = np.deg2rad(angle)
    c, s = abs(np.cos(a)), abs(np.sin(a))
    return w * c + h * s, w * s + h * c


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller area of two (x0, y0, x1, y1) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / small


def draw_glyph(rng: np.random.Generator, glyphs: Sequence[str], main_prob: float) -> str:
    """``glyphs[0]`` with probability ``main_prob`` (always when it is the only one),
    else one of the others, uniformly."""
    if len(glyphs) == 1 or rng.random() < main_prob:
        return glyphs[0]
    return glyphs[1 + int(rng.integers(len(glyphs) - 1))]


def _place(
    rng: np.random.Generator, bw: float, bh: float, h: int, w: int, boxes: list[Box],
    required: bool,
) -> Box | None:
    """Box for a ``bw x bh`` object with little overlap with ``boxes`` (up to 15 % of it
    may leave the image). A required object takes its least overlapping try; an
    optional one is dropped when every try overlaps too much."""
    best: tuple[float, Box] | None = None
    for _ in range(_PLACEMENT_TRIES):
        cx = rng.uniform(0.35 * bw, max(0.35 * bw, w - 0.35 * bw))
        cy = rng.uniform(0.35 * bh, max(0.35 * bh, h - 0.35 * bh))
        box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        worst = max((_overlap(box, b) for b in boxes), default=0.0)
        if worst <= _MAX_OVERLAP:
            return box
        if best is None or worst < best[0]:
            best = (worst, box)
    return best[1] if required and best is not None else None


def scene_layout(
    rng: np.random.Generator, sides: Sequence[int] | np.ndarray, primary: int,
    others: Sequence[int], pick_glyph: Callable[[np.random.Generator, int], str],
) -> SceneLayout:
    """The layout of one world image: 1 or 2 objects of class ``primary`` and 2 or 3
    distractors of classes ``others``, in a random depth order.

    Height and width are drawn from ``sides``; ``pick_glyph(rng, class_id)`` chooses
    each object's glyph. Targets always get a place (their least overlapping try); a
    distractor that finds no place with little overlap is dropped.
    """
    h, w = int(rng.choice(sides)), int(rng.choice(sides))
    n_targets = 1 + int(rng.random() < _P_TWO_TARGETS)
    n_distractors = int(rng.integers(_DISTRACTORS[0], _DISTRACTORS[1] + 1))
    distractors = [int(c) for c in rng.choice(others, size=n_distractors, replace=False)]
    boxes: list[Box] = []
    objects: list[SceneObject] = []
    for i, class_id in enumerate([primary] * n_targets + distractors):
        glyph = pick_glyph(rng, class_id)
        size = float(rng.uniform(*_OBJECT_SIZE) * min(h, w))
        params = _draw_object_params(rng, class_id, glyph, size)
        bw, bh = _rotated_box(*scaled_size(glyph, size), float(params["angle"]))
        placed = _place(rng, bw, bh, h, w, boxes, required=i < n_targets)
        if placed is None:
            continue
        boxes.append(placed)
        cx, cy = (placed[0] + placed[2]) / 2, (placed[1] + placed[3]) / 2
        objects.append(SceneObject(cx=cx, cy=cy, **params))  # type: ignore[arg-type]
    order = rng.permutation(len(objects))
    return SceneLayout(h, w, tuple(objects[j] for j in order))


def single_object_layout(rng: np.random.Generator, side: int, label: int,
                         glyph: str) -> SceneLayout:
    """A ``side`` x ``side`` layout of one object of class ``label`` (a pretraining
    sample): 45-85 % of the side, mostly inside the image."""
    s = side
    size = float(rng.uniform(0.45, 0.85) * s)
    params = _draw_object_params(rng, label, glyph, size)
    bw, bh = _rotated_box(*scaled_size(glyph, size), float(params["angle"]))
    cx = rng.uniform(min(0.45 * bw, s / 2), max(s / 2, s - 0.45 * bw))
    cy = rng.uniform(min(0.45 * bh, s / 2), max(s / 2, s - 0.45 * bh))
    return SceneLayout(s, s, (SceneObject(cx=cx, cy=cy, **params),))  # type: ignore[arg-type]
