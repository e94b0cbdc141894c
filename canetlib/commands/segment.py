"""``segment``: arrives with issue 4 (training, evaluation, CLI, benchmark)."""

from __future__ import annotations

import argparse

HELP = "segment (not available yet in this version)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p


def run(args: argparse.Namespace) -> int:
    raise RuntimeError("'segment' is not implemented in this version of canetlib yet")
