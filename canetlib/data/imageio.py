"""Robust reading and atomic writing of images and label masks.

* :func:`read_image` always returns ``(H, W, 3)`` uint8 RGB, whatever the file
  holds: grayscale, grayscale + alpha, RGBA, palette, CMYK, 1-bit, 16-bit or
  32-bit integer and float images.
* :func:`read_label` / :func:`read_mask` return the stored label values (the
  palette *indices* for palette PNGs such as VOC masks, never their colours).
* :func:`write_label_png` writes a label image atomically through
  :func:`canetlib.model.files.atomic_path` (temporary file in the same folder, then
  one rename), so an interrupted run never leaves a half-written mask under the
  final name.

Unreadable or corrupt files raise :class:`ValueError` naming the file; a
missing file raises :class:`FileNotFoundError` naming it. A label file that is
no single-channel mask says why (:func:`mask_problem`: the object only in the
alpha channel, an RGB colour mask; a JPEG, whose compression changes the
values). Images and masks come upright, as viewers show them: a file's EXIF
orientation (a phone photo's rotation) is applied by :func:`upright`, and
:func:`image_size` gives that size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from canetlib.model.files import PathLike, atomic_path

__all__ = [
    "JPEG_FORMATS",
    "SAVE_MASK",
    "image_size",
    "is_jpeg",
    "jpeg_values",
    "mask_problem",
    "open_upright",
    "read_image",
    "read_label",
    "read_mask",
    "upright",
    "voc_palette",
    "write_label_png",
]

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


#: how to save a mask so that it is read as meant
SAVE_MASK = ("save a single-channel PNG mask (mode L or P): 0 background, 1 object "
             "(or its class id), 255 ignore")
#: Pillow's names of the JPEG file formats (lossy: they change label values at edges)
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
#: the largest spread between the channels of a pixel that still counts as gray
_GRAY_SPREAD = 32


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
def open_upright(path: PathLike, what: str = "image file") -> Iterator[Image.Image]:
    """Open and fully decode ``path``, upright, keeping its file format; a missing file ->
    FileNotFoundError, corrupt data -> ValueError, both naming ``what`` and the path."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    try:
        img = Image.open(p)
        img.load()
    except _UNREADABLE as exc:
        raise ValueError(f"cannot read {what} {p}: {exc}") from exc
    try:
        turned = upright(img)
    except _UNREADABLE as exc:
        img.close()
        raise ValueError(f"cannot read {what} {p}: {exc}") from exc
    turned.format = img.format  # the file format survives the turn (JPEG masks are refused)
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
    with open_upright(path) as img:
        try:
            return _to_rgb(img)
        except _UNREADABLE as exc:
            raise ValueError(
                f"cannot convert image file {path} (mode {img.mode}) to RGB: {exc}"
            ) from exc


def _alpha_and_colour(img: Image.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """The alpha channel of ``img`` and the rest (indices, gray or RGB), or None without alpha."""
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        arr = np.asarray(img)
        return arr[:, :, -1], arr[:, :, :-1]
    if img.mode == "P" and "transparency" in img.info:
        return np.asarray(img.convert("RGBA"))[:, :, 3], np.asarray(img)
    return None


def _colours(rgb: np.ndarray, most: int = 3) -> str:
    """The ``most`` commonest colours of an ``(H, W, 3)`` array, as ``(r, g, b)`` text."""
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    top = colours[np.argsort(-counts)[:most]]
    return ", ".join(str(tuple(int(v) for v in c)) for c in top)


def mask_problem(img: Image.Image) -> str | None:
    """Why the decoded ``img`` is no single-channel mask (object only in the alpha channel,
    an RGB colour mask), or None."""
    split = _alpha_and_colour(img)
    if split is not None:
        alpha, colour = split
        if alpha.size and alpha.min() != alpha.max() and colour.min() == colour.max():
            return (f"the mask is in the alpha channel: its colour is {int(colour.flat[0])} "
                    f"everywhere and only the transparency marks the object; {SAVE_MASK}")
    if img.mode in ("RGB", "RGBA", "RGBa"):
        rgb = np.asarray(img)[:, :, :3]
        spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
        if spread.size and int(spread.max()) > _GRAY_SPREAD:
            return f"it is an RGB colour mask (colours {_colours(rgb)}); {SAVE_MASK}"
    return None


def is_jpeg(img: Image.Image) -> bool:
    """Whether ``img`` was read from a JPEG file (lossy: label values change at edges)."""
    return img.format in JPEG_FORMATS


def jpeg_values(values: np.ndarray, most: int = 6) -> str:
    """The first ``most`` distinct values of ``values``, as text for a message."""
    found = np.unique(values)
    return ", ".join(str(v) for v in found[:most].tolist()) + (" ..." if found.size > most else "")


def read_label(path: PathLike) -> np.ndarray:
    """Read a single-channel label image as ``(H, W)`` int32 raw values.

    Palette images give their indices. An RGB file is accepted only when its
    three channels are identical (a gray label saved as RGB). The object only in
    the alpha channel, an RGB colour mask and a JPEG file are refused, naming the cause.
    """
    with open_upright(path) as img:
        problem = mask_problem(img)
        if problem is not None:
            raise ValueError(f"label image {path}: {problem}")
        if is_jpeg(img):
            raise ValueError(f"label image {path} is a JPEG: its lossy compression changes label "
                             f"values at edges (found {jpeg_values(np.asarray(img))}); save masks "
                             "as PNG")
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
