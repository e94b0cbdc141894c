"""Checks on what users feed the model, and the bounding-box support helper.

Every check raises a ``ValueError`` that names the problem, so a bad episode
fails loudly at the door instead of producing a silently wrong mask.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

#: label of pixels that count in neither prediction nor truth (VOC object borders)
IGNORE_INDEX = 255
#: ImageNet statistics: every image fed to the backbone is normalised with them
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: smallest image side the model accepts: two cells of its stride-8 feature grid
#: (a smaller input gives a 1x1 grid, hence the same probability everywhere)
MIN_SIDE = 16
#: most IOM refinements accepted: the paper uses 4 and the masks settle within a few more,
#: while each refinement costs a head pass and a full-size map in memory
MAX_ITERATIONS = 20


def check_size(height: int, width: int, name: str) -> None:
    """An image of ``height x width`` pixels must be at least :data:`MIN_SIDE` a side."""
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"{name} is {width}x{height} pixels; the model needs at least "
                         f"{MIN_SIDE}x{MIN_SIDE} (two cells of its stride-8 feature grid)")


def check_images(images: Tensor, name: str) -> None:
    """``images`` must be finite float ``(..., 3, H, W)``, at least :data:`MIN_SIDE` a side."""
    if not torch.is_tensor(images):
        raise ValueError(f"{name}: expected a tensor, got {type(images).__name__}")
    if images.dim() < 4:
        raise ValueError(f"{name}: expected (B, 3, H, W) or (B, k, 3, H, W), "
                         f"got shape {tuple(images.shape)}")
    if images.shape[-3] != 3:
        raise ValueError(f"{name}: expected 3 colour channels (RGB), got {images.shape[-3]} "
                         f"in shape {tuple(images.shape)}; convert grayscale/RGBA to RGB first")
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor (normalised RGB), got {images.dtype}")
    check_size(images.shape[-2], images.shape[-1], name)
    # one reduction first: a NaN or inf anywhere makes the sum non-finite (so may overflow)
    bad = 0 if bool(images.sum().isfinite()) else int((~torch.isfinite(images)).sum())
    if bad:
        raise ValueError(f"{name}: {bad} value(s) are NaN or infinite; images must hold "
                         "finite numbers")


def check_mask_values(mask: Tensor, name: str) -> None:
    """Masks may hold 0 (background), 1 (target) and 255 (ignore) only."""
    allowed = (mask == 0) | (mask == 1) | (mask == IGNORE_INDEX)  # cheaper than unique()
    if bool(allowed.all()):
        return
    bad = [v for v in torch.unique(mask[~allowed]).tolist()]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise ValueError(f"{name}: mask values must be 0, 1 or {IGNORE_INDEX} (ignore); "
                         f"found {shown}. Binarise class masks first (mask == class_id)")


def check_episode(query: Tensor, supports: Tensor, masks: Tensor) -> None:
    """Validate one batch of episodes as the model receives it.

    Args:
        query: ``(B, 3, H, W)``.
        supports: ``(B, k, 3, Hs, Ws)``.
        masks: ``(B, k, Hs, Ws)``.
    """
    check_images(query, "query image")
    check_images(supports, "support images")
    if query.dim() != 4:
        raise ValueError(f"query image: expected (B, 3, H, W), got {tuple(query.shape)}")
    if supports.dim() != 5:
        raise ValueError(f"support images: expected (B, k, 3, H, W), got {tuple(supports.shape)}")
    if supports.shape[0] != query.shape[0]:
        raise ValueError(f"batch size mismatch: {query.shape[0]} queries but "
                         f"{supports.shape[0]} support sets")
    if masks.dim() != 4 or masks.shape[:2] != supports.shape[:2]:
        raise ValueError(f"support masks: expected (B, k, H, W) = "
                         f"{(*supports.shape[:2], *supports.shape[-2:])}, got {tuple(masks.shape)}")
    if masks.shape[-2:] != supports.shape[-2:]:
        raise ValueError(f"support mask size {tuple(masks.shape[-2:])} differs from support "
                         f"image size {tuple(supports.shape[-2:])}")
    check_mask_values(masks, "support masks")
    fg = (masks == 1).flatten(2).any(dim=2)
    if not bool(fg.all()):
        b, s = (~fg).nonzero()[0].tolist()
        if bool((masks[b, s] == IGNORE_INDEX).any()):
            raise ValueError(f"support mask {s} of episode {b} is empty: it holds 255 but no 1, "
                             "and 255 means ignore, the object is 1; turn a 0/255 mask into "
                             "0/1 first (mask / 255 or mask > 127)")
        raise ValueError(f"support mask {s} of episode {b} is empty (no foreground pixel): "
                         "every support must show the class")


def check_target(image: Tensor, mask: Tensor, name: str = "query") -> None:
    """An image ``(..., 3, H, W)`` and its mask ``(..., H, W)`` must agree in size."""
    if image.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"{name} image size {tuple(image.shape[-2:])} and mask size "
                         f"{tuple(mask.shape[-2:])} differ")
    check_mask_values(mask, f"{name} mask")


def check_at_least(value: object, least: int, name: str, meaning: str = "") -> None:
    """``value`` must be an integer >= ``least``; the error names ``name`` and ``meaning``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        what = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must be an integer >= {least}{what}, got {value!r}")


def check_iterations(iterations: int, name: str = "iterations") -> None:
    """IOM refinements must be an integer from 0 to :data:`MAX_ITERATIONS`."""
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) \
            or not 0 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"{name} must be an integer >= 0 and <= {MAX_ITERATIONS} (IOM "
                         f"refinements after CANet-Init; the paper uses 4), got {iterations!r}")


def raw_pixel_hint(images: Tensor) -> str | None:
    """What ``images`` look like when their values are raw pixels rather than
    ImageNet-normalised (``"0..255"`` or ``"0..1"``), else ``None``."""
    low, high = float(images.amin()), float(images.amax())
    if low < 0:
        return None
    if high > 2:
        return "0..255"
    if high <= 1 and float(images.float().mean()) > 0.2:
        return "0..1"
    return None


def check_scales(scales: Sequence[float], height: int, width: int) -> None:
    """Query scales must be finite, > 0, and keep a ``height x width`` query usable."""
    if len(scales) == 0:
        raise ValueError("scales is empty; use (1.0,) for a single-scale test")
    for s in scales:
        if not (isinstance(s, numbers.Real) and math.isfinite(s) and s > 0):
            raise ValueError(f"scales must be finite numbers > 0, got {tuple(scales)}")
        check_size(round(height * s), round(width * s), f"the query at scale {s:g}")


def format_box(values: Sequence[float]) -> str:
    """``x0, y0, x1, y1`` as the user wrote them (``-50``, not ``-50.0``)."""
    return ", ".join(f"{float(v):g}" for v in values)


def check_box(box: Sequence[float], name: str = "box") -> list[float]:
    """A box ``(x0, y0, x1, y1)`` of four finite numbers, returned as floats; ``name``
    (e.g. ``"support box 2"``) starts the error messages."""
    if len(box) != 4:
        raise ValueError(f"{name}: a box is (x0, y0, x1, y1), got {tuple(box)}")
    values = [float(v) for v in box]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} ({format_box(values)}): coordinates must be finite numbers "
                         "(pixels)")
    return values


def box_to_mask(box: Sequence[float], size: tuple[int, int],
                dtype: torch.dtype = torch.long, name: str = "box") -> Tensor:
    """Turn a box ``(x0, y0, x1, y1)`` (pixels, inclusive-exclusive) into a support mask.

    Paper section 4.4: the whole box of the object is treated as foreground.
    The box is clipped to the image (negative coordinates are fine); a box
    that is empty inside the image, or not four finite numbers, raises ``ValueError``
    whose message starts with ``name`` (e.g. ``"support box 2"``).
    """
    values = check_box(box, name)
    h, w = size
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{name} ({format_box(values)}) is empty inside a {w}x{h} image (a box is "
                         "x0,y0,x1,y1 in pixels with x0 < x1 and y0 < y1, clipped to the image)")
    mask = torch.zeros(h, w, dtype=dtype)
    mask[y0:y1, x0:x1] = 1
    return mask


def mask_to_box(mask: Tensor) -> tuple[int, int, int, int]:
    """Tight box ``(x0, y0, x1, y1)`` around the foreground (value 1) of ``mask``."""
    ys, xs = (mask == 1).nonzero(as_tuple=True)
    if ys.numel() == 0:
        raise ValueError("mask has no foreground pixel, so it has no box")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
