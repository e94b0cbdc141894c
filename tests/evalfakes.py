"""Tiny stand-ins for the evaluator, segmenter and visual tests: model and episodes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from canetlib import CANet


def tiny_model(fusion: str | None = None, seed: int = 0) -> CANet:
    """A small random CANet with a Kaiming-initialised head (varied, tie-free masks)."""
    torch.manual_seed(seed)
    model = CANet(pretrained=False, backbone="resnet-tiny", width=16,
                  backbone_widths=(8, 8, 16, 16), fusion=fusion)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Conv2d) and not name.startswith("backbone"):
                torch.nn.init.kaiming_normal_(module.weight)
                torch.nn.init.normal_(module.bias, 0.0, 0.1)
    return model.eval()


class FakeSource:
    name = "fake"
    class_names = ("red", "green", "blue", "grey")
    num_folds = 1

    def test_classes(self, fold: int) -> list[int]:
        del fold
        return [1, 2, 3]


def _rect_mask(h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.long)
    y0 = int(torch.randint(0, h // 2, (1,), generator=gen))
    x0 = int(torch.randint(0, w // 2, (1,), generator=gen))
    mask[y0:y0 + h // 3 + 1, x0:x0 + w // 3 + 1] = 1
    mask[0, :] = 255
    return mask


class FakeEpisodes(Dataset):
    """Random images with rectangles; sizes cycle through ``sizes`` (query and supports differ)."""

    def __init__(self, episodes: int = 6, shots: int = 1, seed: int = 0,
                 sizes: Sequence[tuple[int, int]] = ((48, 48),), vary_support: bool = False,
                 named: bool = True) -> None:
        self.n, self.shots, self.seed = episodes, shots, seed
        self.sizes, self.vary_support = list(sizes), vary_support
        self.fold = 0
        self.split = "test"
        if named:
            self.source = FakeSource()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(1000 * self.seed + i)
        qh, qw = self.sizes[i % len(self.sizes)]
        sh, sw = self.sizes[(i + 1) % len(self.sizes)] if self.vary_support else (qh, qw)
        return {
            "query_image": torch.randn(3, qh, qw, generator=gen),
            "query_mask": _rect_mask(qh, qw, gen),
            "support_images": torch.randn(self.shots, 3, sh, sw, generator=gen),
            "support_masks": torch.stack([_rect_mask(sh, sw, gen) for _ in range(self.shots)]),
            "class_id": 1 + i % 3,
            "query_id": f"q{i}",
            "support_ids": [f"s{i}_{k}" for k in range(self.shots)],
            "index": i,
        }


def segment_inputs(folder: Path, query: str = "q.png") -> dict[str, Path]:
    """A tiny model checkpoint, a support image with its mask and a query, written to ``folder``."""
    from conftest import rect, rgb
    from PIL import Image

    from canetlib import checkpoint

    paths = {"ckpt": folder / "tiny.pt", "support": folder / "s.png",
             "mask": folder / "m.png", "query": folder / query}
    checkpoint.save_atomic(checkpoint.model_payload(tiny_model()), paths["ckpt"])
    Image.fromarray(rgb(40, 48, 1)).save(paths["support"])
    Image.fromarray(rect(40, 48)).save(paths["mask"])
    Image.fromarray(rgb(36, 60)).save(paths["query"])
    return paths
