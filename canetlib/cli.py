"""``python -m canetlib``: one entry point, one thin module per command.

Each command module in :mod:`canetlib.commands` defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; the work itself lives in
the library so that notebooks and scripts call the same code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: command name -> module; the order is the order of ``--help``
COMMANDS: dict[str, str] = {
    "prepare": "canetlib.commands.prepare",
    "train": "canetlib.commands.train",
    "evaluate": "canetlib.commands.evaluate",
    "segment": "canetlib.commands.segment",
    "bench": "canetlib.commands.bench",
    "ablate": "canetlib.commands.ablate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m canetlib",
        description="CANet few-shot segmentation: prepare data, train, evaluate, "
                    "segment your own images, benchmark speed.")
    from canetlib import __version__

    parser.add_argument("--version", action="version", version=f"canetlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; errors print one clear line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
