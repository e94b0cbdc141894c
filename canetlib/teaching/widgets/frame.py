"""Turning a :mod:`canetlib.teaching.visual` figure into a widget frame: JPEG bytes at natural size.

Frames are rendered at :data:`FRAME_DPI` and shown at their natural pixel
size (an explorer sets the image's layout width to the JPEG's own width, with
``max_width="100%"`` and ``height="auto"``, so a frame shrinks on a narrow
screen but is never stretched). A figure wider than :data:`FRAME_MAX_WIDTH`
pixels (5-shot episodes: one row of seven panels) is wrapped into rows of
panels first (:func:`wrap_panels`), so its titles stay readable;
:func:`frame_height` estimates a frame's height without drawing it, for
explorers that reserve the tallest frame's height.
"""

from __future__ import annotations

import io
import math
from typing import Any

__all__ = [
    "FRAME_DPI", "FRAME_FORMAT", "FRAME_MAX_WIDTH", "FRAME_QUALITY", "encode_frame", "frame_height",
    "frame_image", "pixel_size", "render_frame", "wrap_panels",
]

#: frames are JPEG: the embedded world's textured backgrounds make PNG frames ~10x larger
FRAME_FORMAT = "jpeg"
#: frames are rendered at this dpi and shown at their natural pixel size (10 pt text = 14 px)
FRAME_DPI = 100
#: figures wider than this many pixels are wrapped into rows of panels before rendering
FRAME_MAX_WIDTH = 1200
#: JPEG quality of the live widget's frames
FRAME_QUALITY = 85


def wrap_panels(fig: Any, max_width: int = FRAME_MAX_WIDTH, dpi: int = FRAME_DPI) -> None:
    """Rearrange a one-row figure wider than ``max_width`` px into rows of equal panels.

    The :mod:`canetlib.teaching.visual` figures put every panel in one row; a 5-shot
    episode is then ~2000 px wide and would be shown shrunk to illegible
    titles. The axes keep their order (left to right, then the next row) and
    the figure keeps each panel's size, so the text stays as large as in a
    1-shot frame.
    """
    axes = fig.axes
    width, height = (float(v) for v in fig.get_size_inches())
    rows = min(math.ceil(width * dpi / max_width), len(axes))
    if rows < 2:
        return
    cols = math.ceil(len(axes) / rows)
    rows = math.ceil(len(axes) / cols)
    grid = fig.add_gridspec(rows, cols)
    for i, ax in enumerate(axes):
        ax.set_subplotspec(grid[i // cols, i % cols])
    fig.set_size_inches(width * cols / len(axes), height * rows)


def frame_image(fig: Any) -> Any:
    """The figure, wrapped (:func:`wrap_panels`), as an RGB ``PIL.Image`` at :data:`FRAME_DPI`."""
    from PIL import Image

    wrap_panels(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FRAME_DPI, bbox_inches="tight",
                pil_kwargs={"compress_level": 1})
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def encode_frame(image: Any, quality: int = FRAME_QUALITY) -> bytes:
    """An RGB ``PIL.Image`` as :data:`FRAME_FORMAT` bytes of JPEG ``quality``."""
    buf = io.BytesIO()
    image.save(buf, format=FRAME_FORMAT, quality=int(quality), optimize=True)
    return buf.getvalue()


def render_frame(fig: Any) -> bytes:
    """The figure, wrapped (:func:`wrap_panels`), as JPEG bytes at :data:`FRAME_DPI`."""
    return encode_frame(frame_image(fig))


def pixel_size(frame: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels of an encoded frame (read from its header)."""
    from PIL import Image

    with Image.open(io.BytesIO(frame)) as im:
        width, height = im.size
    return int(width), int(height)


def frame_height(fig: Any) -> int:
    """The height in pixels (an upper estimate) :func:`render_frame` would give ``fig``.

    Lays the figure out (wrapping its panels) without drawing it: the
    figure's height plus the ``savefig.pad_inches`` padding on both sides.
    """
    import matplotlib

    wrap_panels(fig)
    pad = float(matplotlib.rcParams["savefig.pad_inches"])
    return math.ceil((float(fig.get_size_inches()[1]) + 2 * pad) * FRAME_DPI)
