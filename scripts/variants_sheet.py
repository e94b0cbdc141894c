"""A picture of the world's two experiment options, for the results pages.

Top rows: test images of the usual world beside the same images with ``part_recolour=0.5``
(same layouts and masks, colour regions repainted). Bottom rows: the five supports of 5-shot
test episodes with ``support_damage=0.5``, the support mask tinted green and what spoiled each
support written under it::

    python scripts/variants_sheet.py --out data/results/imagenet-backbone/partial-matches/world-variants.jpg
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw

from canetlib.data import make_dataset
from canetlib.data.episodes import denormalise_image
from canetlib.data.world.synthetic import SyntheticSource

TILE = 160


def _tile(image: np.ndarray, mask: np.ndarray | None = None, label: str = "") -> np.ndarray:
    """``image`` scaled to fit a TILE square (aspect kept), mask tinted, label below."""
    img = image.copy()
    if mask is not None:
        sel = mask == 1
        img[sel] = (0.5 * img[sel] + np.array([0, 110, 0])).astype(np.uint8)
    pil = Image.fromarray(img)
    pil.thumbnail((TILE, TILE - 14))
    canvas = Image.new("RGB", (TILE, TILE), "white")
    canvas.paste(pil, ((TILE - pil.width) // 2, 0))
    ImageDraw.Draw(canvas).text((4, TILE - 13), label, fill="black")
    return np.asarray(canvas)


def recolour_rows(n: int) -> list[np.ndarray]:
    plain, parts = SyntheticSource(), SyntheticSource(part_recolour=0.5)
    ids = plain.image_ids("test")[:n]
    return [np.concatenate([_tile(plain.load_image(i), label="usual world") for i in ids], 1),
            np.concatenate([_tile(parts.load_image(i), label="part_recolour=0.5")
                            for i in ids], 1)]


def damage_rows(episodes: int) -> list[np.ndarray]:
    data = make_dataset("synthetic", fold=0, split="test", shots=5, episodes=episodes, seed=0,
                        support_damage=0.5)
    rows = []
    for i in range(episodes):
        item = data[i]
        tiles = []
        for j, kind in enumerate(item["support_damage"]):
            pixels = denormalise_image(torch.as_tensor(item["support_images"][j]))
            image = (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            tiles.append(_tile(image, np.asarray(item["support_masks"][j]), kind or "intact"))
        rows.append(np.concatenate(tiles, 1))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows = recolour_rows(args.images) + damage_rows(args.episodes)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    Image.fromarray(np.concatenate(rows, 0)).save(args.out, quality=90)  # .jpg: a small file
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
