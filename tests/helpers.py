"""Helpers the test modules share: tiny models and configs, fake episodes, small images."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from canetlib import CANet
from canetlib.training.configs import PretrainConfig, TrainConfig, get_config

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- models
def tiny_canet(seed: int | None = 0, **kw: Any) -> CANet:
    """A small random CANet on the ``resnet-tiny`` backbone (``kw`` overrides the sizes)."""
    if seed is not None:
        torch.manual_seed(seed)
    kw = {"backbone": "resnet-tiny", "width": 16, "backbone_widths": (8, 8, 16, 16), **kw}
    return CANet(pretrained=False, **kw)


def tiny_model(fusion: str | None = None, seed: int = 0) -> CANet:
    """A small random CANet with a Kaiming-initialised head (varied, tie-free masks)."""
    model = tiny_canet(seed, fusion=fusion)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Conv2d) and not name.startswith("backbone"):
                torch.nn.init.kaiming_normal_(module.weight)
                torch.nn.init.normal_(module.bias, 0.0, 0.1)
    return model.eval()


# --------------------------------------------------------------------------- configs
#: a CANet small enough for a test: tiny backbone, 16-channel head, 64 px, 8 episodes
TINY = ["backbone_widths=8,16,16,16", "width=16", "train_size=64", "episodes=8",
        "batch_size=2", "world_images=3", "backbone_checkpoint=none", "threads=1", "num_workers=0",
        "save_every=1"]


def tiny_config(*extra: str) -> TrainConfig:
    cfg = get_config("synthetic-1shot", [*TINY, *extra])
    assert isinstance(cfg, TrainConfig)
    return cfg


#: a backbone pretraining run small enough for a test
PRETRAIN_TINY = ["backbone_widths=8,16,16,16", "image_size=64", "images_per_class=1", "batch_size=8",
        "steps=6", "warmup=2", "threads=1", "save_every=2"]


def tiny_pretrain_config(*extra: str) -> PretrainConfig:
    cfg = get_config("synthetic-pretrain", [*PRETRAIN_TINY, *extra])
    assert isinstance(cfg, PretrainConfig)
    return cfg


def subprocess_env() -> dict[str, str]:
    """The environment of a test subprocess: this checkout importable, no progress bars."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["CANETLIB_NO_PROGRESS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def train_module_argv(out: Path, *args: str) -> list[str]:
    """``python`` arguments of a tiny ``-m canetlib train`` run into ``out``."""
    sets = [x for item in TINY for x in ("--set", item)]
    return ["-m", "canetlib", "train", "--config", "synthetic-1shot", "--fold", "0",
            "--out", str(out), *sets, *args]


def train_cli(out: Path, *args: str) -> list[str]:
    """``canetlib.cli.main`` arguments of a tiny training run into ``out``."""
    sets = [x for item in TINY for x in ("--set", item)]
    return ["train", "--config", "synthetic-1shot", "--fold", "0", "--out", str(out), *sets,
            "--no-progress", *args]


# --------------------------------------------------------------------------- episodes and images
def make_episode(batch: int = 1, shots: int = 1, size: int = 65,
                 support_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random normalised images and rectangular support masks."""
    ss = support_size or size
    query = torch.randn(batch, 3, size, size)
    supports = torch.randn(batch, shots, 3, ss, ss)
    masks = torch.zeros(batch, shots, ss, ss, dtype=torch.long)
    for b in range(batch):
        for k in range(shots):
            y0, x0 = 4 + 3 * k, 6 + 2 * b
            masks[b, k, y0:y0 + ss // 2, x0:x0 + ss // 3] = 1
    masks[:, :, 0, :] = 255  # an ignore border, as VOC has
    return query, supports, masks


# -- small images and masks for the segment/fault tests
def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random colours, ``(h, w, 3)`` uint8."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rect(h: int, w: int, value: int = 255) -> np.ndarray:
    """A rectangle of ``value`` on zeros, ``(h, w)`` uint8."""
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: w // 2] = value
    return m


def scene(rng: np.random.Generator, h: int = 72, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a red square (class 1) on the left and a blue disc (class 2) right."""
    image = rng.integers(90, 140, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    side = int(rng.integers(16, 26))
    y, x = int(rng.integers(2, h - side - 2)), int(rng.integers(2, w // 2 - side))
    image[y:y + side, x:x + side] = (220, 40, 40)
    mask[y:y + side, x:x + side] = 1
    yy, xx = np.mgrid[:h, :w]
    r = int(rng.integers(8, 13))
    cy, cx = int(rng.integers(r + 1, h - r - 1)), int(rng.integers(w // 2 + r, w - r - 1))
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    image[disc] = (40, 60, 220)
    mask[disc] = 2
    mask[0, :] = 255  # an ignored border row
    return image, mask


def scenes(n: int = 6, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` seeded scenes of :func:`scene`: images and masks."""
    rng = np.random.default_rng(seed)
    images, masks = zip(*(scene(rng) for _ in range(n)))
    return list(images), list(masks)


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
    from PIL import Image

    from canetlib.model import checkpoint

    paths = {"ckpt": folder / "tiny.pt", "support": folder / "s.png",
             "mask": folder / "m.png", "query": folder / query}
    checkpoint.save_atomic(checkpoint.model_payload(tiny_model()), paths["ckpt"])
    Image.fromarray(rgb(40, 48, 1)).save(paths["support"])
    Image.fromarray(rect(40, 48)).save(paths["mask"])
    Image.fromarray(rgb(36, 60)).save(paths["query"])
    return paths


# --------------------------------------------------------------------------- the repository
def runs_slow_tests(config: pytest.Config) -> bool:
    """Whether this session runs the slow tests: ``--runslow``, ``--nbval`` (the README's
    full run), ``--nbval-lax``, or a ``-m`` expression that names them."""
    return bool(config.getoption("--runslow") or config.getoption("--nbval", default=False)
                or config.getoption("--nbval-lax", default=False)
                or "slow" in (config.getoption("-m", default="") or ""))


def readme_command(number: int) -> str:
    """The command under ``# N.`` in the README's quick start block."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"# {number}."):
            return lines[i + 1].strip()
    raise AssertionError(f"README.md has no command {number}")


def table3_script() -> ModuleType:
    """``experiments/table3.py`` (the Table 3 runner, not part of the wheel) as a module."""
    return load_script("table3", "experiments")


def load_script(name: str, folder: str = "scripts") -> ModuleType:
    """The script ``FOLDER/NAME.py`` of the repository (not part of the wheel) as a module;
    it may import its siblings, as when run (``FOLDER`` is on the path)."""
    if str(ROOT / folder) not in sys.path:
        sys.path.append(str(ROOT / folder))
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", ROOT / folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
