"""Robust reading and atomic writing of images and label masks.

* :func:`read_image` always returns ``(H, W, 3)`` uint8 RGB, whatever the file
  holds: grayscale, grayscale + alpha, RGBA, palette, CMYK, 1-bit, 16-bit or
  32-bit integer and float images.
* :func:`read_label` / :func:`read_mask` return the stored label values (the
  palette *indices* for palette PNGs such as VOC masks, never their colours).
* :func:`write_label_png` writes a label image atomically through
  :func:`canetlib.fsutil.atomic_path` (temporary file in the same folder, then
  one rename), so an interrupted run never leaves a half-written mask under the
  final name.
* :func:`atomic_path`, :func:`write_atomic`, :func:`temp_beside` and
  :func:`check_writable` are the package's one atomic writer and its checks,
  defined in :mod:`canetlib.fsutil` and importable from here as before.

Unreadable or corrupt files raise :class:`ValueError` naming the file; a
missing file raises :class:`FileNotFoundError` naming it. Images and masks come
upright, as viewers show them: a file's EXIF orientation (a phone photo's
rotation) is applied by :func:`upright`, and :func:`image_size` gives that size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from canetlib.fsutil import PathLike, atomic_path, check_writable, temp_beside, write_atomic

__all__ = [
    "PathLike",
    "atomic_path",
    "check_writable",
    "image_size",
    "read_image",
    "read_label",
    "read_mask",
    "temp_beside",
    "upright",
    "voc_palette",
    "write_atomic",
    "write_label_png",
]

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


#: the EXIF tag of the orientation, and the orientations that swap width and height
_ORIENTATION = 0x0112
_SIDEWAYS = frozenset({5, 6, 7, 8})


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation of ``img`` (1 = upright, also when absent or unreadable)."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except _UNREADABLE:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(img: Image.Image) -> Image.Image:
    """``img`` as viewers show it: its EXIF orientation applied (``img`` itself when upright)."""
    if _orientation(img) == 1:
        return img
    return ImageOps.exif_transpose(img)


def image_size(path: PathLike) -> tuple[int, int]:
    """``(H, W)`` of the image file ``path`` as :func:`read_image` returns it (header only)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    try:
        with Image.open(p) as img:
            sideways = _orientation(img) in _SIDEWAYS
            return (img.width, img.height) if sideways else (img.height, img.width)
    except _UNREADABLE as exc:
        raise ValueError(f"cannot read image file {p}: {exc}") from exc


@contextmanager
def _open(path: PathLike) -> Iterator[Image.Image]:
    """Open and fully decode ``path``, upright; corrupt data -> ValueError naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    try:
        img = Image.open(p)
        img.load()
    except _UNREADABLE as exc:
        raise ValueError(f"cannot read image file {p}: {exc}") from exc
    try:
        turned = upright(img)
    except _UNREADABLE as exc:
        img.close()
        raise ValueError(f"cannot read image file {p}: {exc}") from exc
    try:
        yield turned
    finally:
        turned.close()
        img.close()


def _scale_to_uint8(arr: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """Map one integer or float channel to uint8."""
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64))
        top = 1.0 if arr.size and arr.max() <= 1.0 else 255.0
        return np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    if sixteen_bit or (arr.size and arr.max() > 255):
        if arr.size and arr.max() > 65535:  # wider than 16 bit: stretch the range
            lo, hi = int(arr.min()), int(arr.max())
            return np.rint((arr - lo) * (255.0 / max(hi - lo, 1))).astype(np.uint8)
        return np.rint(np.clip(arr, 0, 65535) / 257.0).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any decoded Pillow image to an ``(H, W, 3)`` uint8 array."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        gray = _scale_to_uint8(np.asarray(img), img.mode in _SIXTEEN_BIT_MODES)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")  # alpha is dropped below, colour is kept
    # np.array copies: Pillow's buffer is read-only, and torch warns on read-only arrays
    return np.array(img.convert("RGB"), dtype=np.uint8)


def read_image(path: PathLike) -> np.ndarray:
    """Read ``path`` as RGB ``(H, W, 3)`` uint8 (any input mode converted)."""
    with _open(path) as img:
        try:
            return _to_rgb(img)
        except _UNREADABLE as exc:
            raise ValueError(
                f"cannot convert image file {path} (mode {img.mode}) to RGB: {exc}"
            ) from exc


def read_label(path: PathLike) -> np.ndarray:
    """Read a single-channel label image as ``(H, W)`` int32 raw values.

    Palette images give their indices. An RGB file is accepted only when its
    three channels are identical (a gray label saved as RGB).
    """
    with _open(path) as img:
        mode = img.mode
        if mode in ("P", "L", "I", "1") or mode in _SIXTEEN_BIT_MODES:
            return np.asarray(img).astype(np.int32)
        if mode in ("LA", "PA"):
            return np.asarray(img)[:, :, 0].astype(np.int32)
        if mode in ("RGB", "RGBA"):
            rgb = np.asarray(img)[:, :, :3]
            if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(
                rgb[:, :, 0], rgb[:, :, 2]
            ):
                return rgb[:, :, 0].astype(np.int32)
        raise ValueError(
            f"label image {path} has mode {mode}: expected a single-channel "
            "(palette, L or 16-bit) image of label values"
        )


def read_mask(path: PathLike) -> np.ndarray:
    """Read a semantic mask as ``(H, W)`` uint8 (values must fit 0..255)."""
    label = read_label(path)
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"mask {path} holds values outside 0..255 ({label.min()}..{label.max()})")
    return label.astype(np.uint8)


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map as a flat ``[r, g, b, ...]`` list.

    Entry ``i`` spreads the bits of ``i`` over the three channels, most
    significant first, which is how the VOC masks are coloured.
    """
    palette: list[int] = []
    for index in range(256):
        rgb = [0, 0, 0]
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette.extend(rgb)
    return palette


_VOC_PALETTE = voc_palette()


def write_label_png(label: np.ndarray, path: PathLike) -> None:
    """Write a 2-D label array as PNG, atomically.

    Values 0..255 become a palette PNG with the VOC colours (the indices are
    the labels); larger values (up to 65535) a 16-bit grayscale PNG.
    """
    arr = np.asarray(label)
    if arr.ndim != 2:
        raise ValueError(f"label for {path} must be 2-D, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ValueError(f"label for {path} has values outside 0..65535")
    if arr.size == 0 or arr.max() <= 255:
        img = Image.fromarray(arr.astype(np.uint8))
        img.putpalette(_VOC_PALETTE)
    else:
        img = Image.fromarray(arr.astype(np.uint16))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
