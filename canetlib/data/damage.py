"""Supports of unequal quality: a support made small, truncated or occluded (an episode option).

The paper's attention fusion (section 4.3) is meant to weigh supports by how useful they are.
On a benchmark where every support is a clean image of the class, there is little to weigh.
:func:`damage_support` spoils one support the way photographs do:

* ``small``: the image shrunk to 35-60 % of its side and placed at random on a canvas of its
  mean colour (the object covers a few cells of the feature grid);
* ``truncated``: the image cropped so that 30-60 % of the object's box is cut off by a border;
* ``occluded``: a rectangle of 35-65 % of the object's box covered by a patch of the same image
  taken from elsewhere; the mask marks the covered pixels background (the patch is in front).

Each draw comes from the ``rng`` passed in; a damage that would leave no object pixel is not
applied. Masks keep their 255 pixels where the object stays.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: the ways a support is spoiled, drawn uniformly
DAMAGES = ("small", "truncated", "occluded")
_SMALL = (0.35, 0.6)
_CUT = (0.3, 0.6)
_COVER = (0.35, 0.65)


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) of the object pixels (value 1), end exclusive; None if there are none."""
    ys, xs = np.nonzero(mask == 1)
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _small(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    f = rng.uniform(*_SMALL)
    sh, sw = max(8, round(h * f)), max(8, round(w * f))
    img = np.asarray(Image.fromarray(image).resize((sw, sh), Image.Resampling.BILINEAR))
    rows = ((np.arange(sh) + 0.5) * h / sh).astype(int)  # nearest neighbour, any dtype
    cols = ((np.arange(sw) + 0.5) * w / sw).astype(int)
    msk = mask[rows[:, None], cols]
    y, x = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    out_img = np.empty_like(image)
    out_img[:] = image.reshape(-1, 3).mean(0).astype(np.uint8)
    out_mask = np.zeros_like(mask)
    out_img[y:y + sh, x:x + sw], out_mask[y:y + sh, x:x + sw] = img, msk
    return out_img, out_mask


def _truncated(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y0, x0, y1, x1 = box
    side = int(rng.integers(4))  # the border that cuts: top, bottom, left, right
    f = rng.uniform(*_CUT)
    if side < 2:
        cut = round(y0 + f * (y1 - y0)) if side == 0 else round(y1 - f * (y1 - y0))
        rows = slice(cut, None) if side == 0 else slice(None, cut)
        return image[rows].copy(), mask[rows].copy()
    cut = round(x0 + f * (x1 - x0)) if side == 2 else round(x1 - f * (x1 - x0))
    cols = slice(cut, None) if side == 2 else slice(None, cut)
    return image[:, cols].copy(), mask[:, cols].copy()


def _occluded(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y0, x0, y1, x1 = box
    h, w = mask.shape
    ph = max(2, round((y1 - y0) * rng.uniform(*_COVER)))
    pw = max(2, round((x1 - x0) * rng.uniform(*_COVER)))
    py = int(rng.integers(y0, max(y0, y1 - ph) + 1))
    px = int(rng.integers(x0, max(x0, x1 - pw) + 1))
    ph, pw = min(ph, h - py), min(pw, w - px)
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    img, msk = image.copy(), mask.copy()
    img[py:py + ph, px:px + pw] = image[sy:sy + ph, sx:sx + pw]
    msk[py:py + ph, px:px + pw] = 0
    return img, msk


def damage_support(image: np.ndarray, mask: np.ndarray, kind: str, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(image, mask)`` spoiled by ``kind`` (one of :data:`DAMAGES`); returned unchanged when
    the mask has no object pixel or the damage would leave none. Inputs are not modified."""
    if kind not in DAMAGES:
        raise ValueError(f"support damage must be one of {DAMAGES}, got {kind!r}")
    box = _box(mask)
    if box is None:
        return image, mask
    if kind == "small":
        out = _small(image, mask, rng)
    elif kind == "truncated":
        out = _truncated(image, mask, box, rng)
    else:
        out = _occluded(image, mask, box, rng)
    return out if (out[1] == 1).any() else (image, mask)


def damage_supports(images: list[np.ndarray], masks: list[np.ndarray], prob: float,
                    rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Each support spoiled with probability ``prob`` by a damage drawn uniformly; also returns
    what was done to each (``""`` for an intact support). Three draws per support, always."""
    out_images, out_masks, kinds = [], [], []
    for image, mask in zip(images, masks):
        hit, kind = rng.random() < prob, DAMAGES[int(rng.integers(len(DAMAGES)))]
        sub = np.random.default_rng(rng.integers(2**63))
        new_image, new_mask = damage_support(image, mask, kind, sub) if hit else (image, mask)
        out_images.append(new_image)
        out_masks.append(new_mask)
        kinds.append(kind if new_image is not image else "")
    return out_images, out_masks, kinds
