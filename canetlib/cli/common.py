"""Thin command-line entry points; see :mod:`canetlib.cli`."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads (see :func:`canetlib.model.runtime.configure_threads`)."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: OMP_NUM_THREADS if set, else 1: on "
                        "a shared machine more threads can be many times slower)")


def apply_threads(args: argparse.Namespace) -> int:
    """Set the thread count ``args.threads`` asks for; returns the number in use.

    ``--threads 0`` (or below) is refused naming the flag and its value."""
    from canetlib.model.runtime import configure_threads

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    return configure_threads(threads)


def write_json(result: dict[str, Any], path: str) -> None:
    """Write ``result`` as indented JSON, atomically."""
    from canetlib.model.files import write_atomic

    write_atomic(path, json.dumps(result, indent=2, default=str) + "\n")
