"""Pixels from a layout: procedural backgrounds, glyphs painted back to front, masks.

* :func:`procedural_background`: a textured background (two colours mixed by
  noise, stripes, a gradient or tiles, with shading and grain);
* :func:`compose_scene`: paints a :class:`~canetlib.data.world.layout.SceneLayout`
  (each glyph flipped, scaled, rotated and colour-jittered) and returns the
  visible-object map;
* :func:`semantic_from_objects`: the VOC-style semantic mask with its 255 band
  of ``2 * BORDER_WIDTH`` px around every outline; :func:`layout_class_areas` counts
  its pixels per class without painting colours.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from canetlib.data.source import IGNORE_INDEX
from canetlib.data.world.glyphs import glyph_parts
from canetlib.data.world.layout import SceneLayout, SceneObject, scaled_size
from canetlib.data.world.recolour import recoloured_rgb

#: Ignore band half-width in px: the 255 ring is ``2 * BORDER_WIDTH`` px wide.
BORDER_WIDTH = 1


# --- procedural backgrounds ---------------------------------------------------------------
def _random_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.3, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a ``cells x cells`` random grid upsampled bicubically."""
    grid = rng.random((cells, cells), dtype=np.float32)
    field = np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    return np.clip(field, 0.0, 1.0)


def _pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A ``(h, w)`` mixing field in [0, 1]: noise, stripes, gradient or tiles."""
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0.0, np.pi)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    if kind == 0:
        return _smooth_noise(rng, h, w, int(rng.integers(3, 9)))
    if kind == 1:
        period = rng.uniform(8.0, 40.0)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * along / period + rng.uniform(0, 2 * np.pi))
        return (wave > 0.5).astype(np.float32) if rng.random() < 0.5 else wave
    if kind == 2:
        span = float(along.max() - along.min()) or 1.0
        return (along - along.min()) / span
    cell = int(rng.integers(10, 31))
    if rng.random() < 0.5:  # checkerboard
        return (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    cy, cx = (yy % cell) - cell / 2, (xx % cell) - cell / 2  # dots
    return (np.hypot(cy, cx) < cell * rng.uniform(0.2, 0.4)).astype(np.float32)


def _grain_tile() -> np.ndarray:
    """A fixed 512 x 512 x 3 Gaussian grain texture (random crops of it add grain)."""
    tile = getattr(_grain_tile, "tile", None)
    if tile is None:
        rng = np.random.default_rng(np.random.SeedSequence([20190616, 1]))
        tile = rng.standard_normal((512, 512, 3), dtype=np.float32) * np.float32(0.02)
        _grain_tile.tile = tile  # type: ignore[attr-defined]
    return tile


def procedural_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured ``(h, w, 3)`` float32 background in [0, 1] (two colours mixed by a
    pattern, a low-frequency shading and a fine grain)."""
    c1, c2 = _random_colour(rng), _random_colour(rng)
    t = _pattern(rng, h, w)
    shade = 0.85 + 0.3 * _smooth_noise(rng, h, w, int(rng.integers(2, 6)))
    img = c1 * shade[..., None] + (c2 - c1) * (t * shade)[..., None]
    tile = _grain_tile()
    if h > 512 or w > 512:
        tile = np.tile(tile, (h // 512 + 1, w // 512 + 1, 1))
    y0 = int(rng.integers(0, tile.shape[0] - h + 1))
    x0 = int(rng.integers(0, tile.shape[1] - w + 1))
    img += tile[y0 : y0 + h, x0 : x0 + w]
    return np.clip(img, 0.0, 1.0, out=img)


# --- objects ------------------------------------------------------------------------------
def _transform(img: Image.Image, obj: SceneObject, resample: Image.Resampling) -> Image.Image:
    """Flip, scale and rotate one glyph channel image like ``obj`` says."""
    if obj.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.resize(scaled_size(obj.glyph, obj.size), resample)
    return img.rotate(obj.angle, resample=resample, expand=True)


def _colour_matrix(obj: SceneObject) -> np.ndarray:
    """3 x 3 RGB matrix: hue rotation about the grey axis, saturation and brightness
    factors (a mild jitter that keeps the glyph recognisable)."""
    a = 2.0 * np.pi * obj.hue
    k = np.full((3, 3), 1.0 / 3.0)
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / np.sqrt(3.0)
    hue = np.cos(a) * np.eye(3) + np.sin(a) * cross + (1.0 - np.cos(a)) * k
    luma = np.tile(np.array([0.299, 0.587, 0.114]), (3, 1))
    sat = obj.sat * np.eye(3) + (1.0 - obj.sat) * luma
    return (obj.val * sat @ hue).astype(np.float32)


def _object_alpha(obj: SceneObject) -> np.ndarray:
    """Transformed glyph alpha, ``(h, w)`` float32 in [0, 1]."""
    alpha = glyph_parts(obj.glyph)[1]
    return np.asarray(_transform(alpha, obj, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def _object_rgb(obj: SceneObject) -> np.ndarray:
    """Transformed, colour-jittered glyph colours, ``(h, w, 3)`` float32 in [0, 1]."""
    rgb = recoloured_rgb(obj)
    rgb_arr = np.asarray(_transform(rgb, obj, Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(rgb_arr @ (_colour_matrix(obj).T / 255.0), 0.0, 1.0)


def _paste_window(
    obj: SceneObject, shape: tuple[int, int], img_h: int, img_w: int
) -> tuple[slice, slice, slice, slice] | None:
    """Image and object slices where an ``shape`` object centred at (cx, cy) lands."""
    h, w = shape
    y0, x0 = round(obj.cy - h / 2), round(obj.cx - w / 2)
    iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y0 + h, img_h), min(x0 + w, img_w)
    if iy0 >= iy1 or ix0 >= ix1:
        return None
    return (slice(iy0, iy1), slice(ix0, ix1), slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))


def compose_scene(
    layout: SceneLayout, background: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray]:
    """Paint a layout back to front.

    Returns the RGB image (uint8, or None when ``background`` is None: masks only)
    and the visible-object map ``(H, W)`` uint8: 0 background, ``k`` where object
    ``layout.objects[k - 1]`` is on top (alpha >= 0.5).
    """
    h, w = layout.height, layout.width
    objmap = np.zeros((h, w), dtype=np.uint8)
    canvas = None if background is None else background.astype(np.float32, copy=True)
    for k, obj in enumerate(layout.objects, start=1):
        alpha = _object_alpha(obj)
        win = _paste_window(obj, alpha.shape, h, w)
        if win is None:
            continue
        ys, xs, oys, oxs = win
        a = alpha[oys, oxs]
        objmap[ys, xs][a >= 0.5] = k
        if canvas is not None:
            rgb = _object_rgb(obj)[oys, oxs]
            canvas[ys, xs] = rgb * a[..., None] + canvas[ys, xs] * (1.0 - a[..., None])
    image = None if canvas is None else (canvas * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return image, objmap


# --- masks --------------------------------------------------------------------------------
def _label_changes(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px (chessboard distance) of a label change, on both sides."""
    if width != 1:
        size = 2 * width + 1
        return ndimage.maximum_filter(labels, size=size) != ndimage.minimum_filter(
            labels, size=size
        )
    ring = np.zeros(labels.shape, dtype=bool)
    for a, b in (
        ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
        ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
        ((slice(1, None), slice(1, None)), (slice(None, -1), slice(None, -1))),
        ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None))),
    ):
        diff = labels[a] != labels[b]
        ring[a] |= diff
        ring[b] |= diff
    return ring


def semantic_from_objects(objmap: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """VOC-style semantic mask: class ids on visible object pixels and a 255 ring of
    ``2 * BORDER_WIDTH`` px on every label change (object outlines, object contacts)."""
    lut = np.array([0, *classes], dtype=np.uint8)
    semantic = lut[objmap]
    semantic[_label_changes(objmap, BORDER_WIDTH)] = IGNORE_INDEX
    return semantic


def layout_class_areas(layout: SceneLayout, num_classes: int) -> dict[int, int]:
    """Non-ignore pixel count of every class ``1..num_classes`` shown by ``layout``
    (a masks-only render: no colours are painted)."""
    _, objmap = compose_scene(layout, None)
    semantic = semantic_from_objects(objmap, [o.class_id for o in layout.objects])
    counts = np.bincount(semantic.ravel(), minlength=256)
    return {c: int(counts[c]) for c in range(1, num_classes + 1) if counts[c] > 0}
