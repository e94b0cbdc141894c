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

import pytest
import torch
from helpers import runs_slow_tests

os.environ.setdefault("CANETLIB_NO_PROGRESS", "1")

SLOW_HINT = ("slow: run with --runslow or -m slow (the README's full command, "
             "python -m pytest --nbval tests/ book/, runs it)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (the full run, as --nbval does)")


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


