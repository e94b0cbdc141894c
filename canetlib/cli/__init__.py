"""``python -m canetlib``: one entry point, one thin module per command.

Each command module in :mod:`canetlib.cli` defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; the work itself lives in
the library so that notebooks and scripts call the same code.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from canetlib.model.extras import MissingExtraError

#: command name -> module; the order is the order of ``--help``
COMMANDS: dict[str, str] = {
    "prepare": "canetlib.cli.prepare",
    "train": "canetlib.cli.train",
    "evaluate": "canetlib.cli.evaluate",
    "segment": "canetlib.cli.segment",
    "bench": "canetlib.cli.bench",
    "set-input-size": "canetlib.cli.set_input_size",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the command ``only`` (its module alone is imported)."""
    parser = argparse.ArgumentParser(
        prog="python -m canetlib",
        description="CANet few-shot segmentation: prepare data, train, evaluate, "
                    "segment your own images, benchmark speed.")
    from canetlib import __version__

    parser.add_argument("--version", action="version", version=f"canetlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
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


def run_guarded(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace
                ) -> int:
    """Call ``run(args)`` and turn its errors into one ``error: ...`` line on stderr.

    Exit status: ``run``'s (0 for ``None``), 2 bad input or an OS error (named path),
    130 Ctrl-C. Warnings print as one ``warning: ...`` line.
    """
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(run(args) or 0)
    except (ValueError, RuntimeError, MissingExtraError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; errors print one clear line (:func:`run_guarded`)."""
    argv = glue_negative_values(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # only a command with ``config_flags`` (train: the config's fields) takes more
        if not isinstance(getattr(args, "config_flags", None), list):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.config_flags = extra
    return run_guarded(args._run, args)
