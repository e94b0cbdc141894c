"""``python -m canetlib``: one entry point, one thin module per command.

Each command module in :mod:`canetlib.commands` defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; the work itself lives in
the library so that notebooks and scripts call the same code.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from canetlib.extras import MissingExtraError

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


#: an option value made of negative numbers, e.g. ``-50,-50,20,20`` (argparse would
#: take it for an option)
_NEGATIVE_VALUE = re.compile(r"^-[\d.]+(,-?[\d.]+)+$")


def glue_negative_values(argv: Sequence[str]) -> list[str]:
    """``--opt -5,-5,20,20`` -> ``--opt=-5,-5,20,20`` so that argparse accepts it."""
    out: list[str] = []
    for arg in argv:
        if out and _NEGATIVE_VALUE.match(arg) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def describe_os_error(err: OSError) -> str:
    """One line naming the path(s) of an ``OSError`` (permission, full disk, ...)."""
    if err.filename is None:
        return str(err)
    paths = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    return f"{err.strerror or type(err).__name__}: {paths}"


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; errors print one clear line.

    Exit status: 0 done, 2 bad input or an OS error (named path), 130 Ctrl-C.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(
        glue_negative_values(sys.argv[1:] if argv is None else argv))
    if extra:  # only a command with ``config_flags`` (train: the config's fields) takes more
        if not isinstance(getattr(args, "config_flags", None), list):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.config_flags = extra
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args._run(args) or 0)
    except (ValueError, RuntimeError, MissingExtraError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
