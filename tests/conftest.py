"""Shared test settings: small, seeded, single-threaded-friendly; slow tests on request.

Tests marked ``@pytest.mark.slow`` (wheel build, torchrun, the shell sweep, a SIGKILLed
training subprocess, the browser, the shipped model on many episodes) are skipped by a
plain ``python -m pytest``, the quick run. They run with ``--runslow``, with ``-m slow``,
and in the README's full command (``python -m pytest --nbval tests/ book/``, which CI runs
verbatim): ``--nbval`` asks for the whole suite, notebooks included, so it runs them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch

os.environ.setdefault("CANETLIB_NO_PROGRESS", "1")

SLOW_HINT = ("slow: run with --runslow or -m slow (the README's full command, "
             "python -m pytest --nbval tests/ book/, runs it)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (the full run, as --nbval does)")


def runs_slow_tests(config: pytest.Config) -> bool:
    """Whether this session runs the slow tests: ``--runslow``, ``--nbval`` (the README's
    full run), ``--nbval-lax``, or a ``-m`` expression that names them."""
    return bool(config.getoption("--runslow") or config.getoption("--nbval", default=False)
                or config.getoption("--nbval-lax", default=False)
                or "slow" in (config.getoption("-m", default="") or ""))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if runs_slow_tests(config):
        return
    skip = pytest.mark.skip(reason=SLOW_HINT)
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_threads() -> Iterator[None]:
    """Seed torch, and restore its thread count after tests that change it."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


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
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rect(h: int, w: int, value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: w // 2] = value
    return m
