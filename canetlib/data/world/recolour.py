"""Partial matches: an object's colour regions repainted independently (an option of the world).

A glyph is drawn in a few flat colours and a black outline. :func:`colour_regions` finds its
regions (each colour covering at least ``MIN_REGION_FRACTION`` of the glyph; the outline is
never one); :func:`recolour_layout` gives every region of every object, with probability
``prob``, a random new colour; :func:`recoloured_rgb` paints it. Two instances of a class then
share their shape and outline but only some of their colours, so support and query match in
parts of the object, not as a whole. Masks and layouts are unchanged.
"""

from __future__ import annotations

import colorsys
import dataclasses
from functools import cache

import numpy as np
from PIL import Image

from canetlib.data.world.glyphs import glyph_parts, render_glyph
from canetlib.data.world.layout import SceneLayout, SceneObject

#: a colour is a region when it covers at least this fraction of the glyph's opaque pixels
MIN_REGION_FRACTION = 0.02
#: colours this dark (largest channel, 0-255) belong to the outline, never repainted
OUTLINE_MAX = 60
#: regions considered per glyph (the largest ones); draws per object stay fixed in number
MAX_REGIONS = 6


@cache
def colour_regions(hexcode: str) -> tuple[np.ndarray, np.ndarray]:
    """The glyph's colour regions: a label map ``(h, w)`` int8 (-1 outline or transparent,
    ``i`` region ``i``) and their colours ``(n, 3)`` float32 in [0, 1], largest first.

    Every opaque pixel goes to the nearest of the region colours and black; a pixel nearest
    black is outline.
    """
    rgba = render_glyph(hexcode)
    opaque = rgba[..., 3] >= 128
    rgb = rgba[..., :3][opaque].astype(np.float32)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    keep = [i for i in order if counts[i] >= MIN_REGION_FRACTION * len(rgb)
            and colours[i].max() > OUTLINE_MAX][:MAX_REGIONS]
    palette = colours[keep]
    centres = np.concatenate([palette, np.zeros((1, 3), np.float32)])
    dist = ((rgba[..., None, :3].astype(np.float32) - centres) ** 2).sum(-1)
    labels = dist.argmin(-1).astype(np.int8)
    labels[(labels == len(palette)) | ~opaque] = -1
    return labels, palette / 255.0


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    h, s, v = rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.35, 0.95)
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def recolour_layout(layout: SceneLayout, rng: np.random.Generator, prob: float) -> SceneLayout:
    """``layout`` with each colour region of each object repainted with probability ``prob``
    (a new random colour); the same number of draws per object whatever its glyph."""
    objects = []
    for obj in layout.objects:
        draws = [(rng.random() < prob, _random_colour(rng)) for _ in range(MAX_REGIONS)]
        n = len(colour_regions(obj.glyph)[1])
        new = tuple(colour if repaint else None for repaint, colour in draws[:n])
        objects.append(dataclasses.replace(obj, region_colours=new))
    return dataclasses.replace(layout, objects=tuple(objects))


def recoloured_rgb(obj: SceneObject) -> Image.Image:
    """The glyph's RGB image with ``obj.region_colours`` painted in (unchanged without them).

    A pixel of region ``i`` with colour ``x`` becomes ``x + (new - old) (x . old) / |old|^2``:
    the region colour maps to the new one, and a pixel blended with the black outline keeps
    its share of black.
    """
    rgb_image = glyph_parts(obj.glyph)[0]
    if not any(c is not None for c in obj.region_colours):
        return rgb_image
    labels, palette = colour_regions(obj.glyph)
    rgb = np.asarray(rgb_image, dtype=np.float32) / 255.0
    out = rgb.copy()
    for i, new in enumerate(obj.region_colours):
        if new is None:
            continue
        old = palette[i]
        where = labels == i
        share = rgb[where] @ old / float(old @ old)
        out[where] = rgb[where] + share[:, None] * (np.asarray(new, np.float32) - old)
    return Image.fromarray((out.clip(0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
