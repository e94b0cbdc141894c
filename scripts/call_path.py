"""How far a command travels through canetlib before the first IOM convolution.

    python scripts/call_path.py evaluate --dataset synthetic --fold 0 --episodes 2 --seeds 1 \\
        --checkpoint synthetic-imagenet-1shot-fold0

runs ``python -m canetlib ARGS...`` in this process under :func:`sys.setprofile` and, up
to the first call of :class:`canetlib.model.modules.IterativeOptimization`'s ``forward`` or
``input_part`` (each begins with the IOM's first convolution), counts the distinct canetlib files in which a
function ran and the deepest stack of canetlib frames. Code run while a module is being
imported (module bodies and what they call) is left out. ``--list`` prints the files in
the order they were first entered. The command then runs to its end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import canetlib
from canetlib.cli import main as canetlib_main
from canetlib.model.modules import IterativeOptimization

PACKAGE = str(Path(canetlib.__file__).resolve().parent) + "/"
#: the methods of IterativeOptimization that run its convolutions
IOM_METHODS = ("forward", "input_part")


class CallPath:
    """A profile function recording the canetlib calls until the IOM is first entered."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.deepest = 0
        self.deepest_stack: list[str] = []
        self.reached = False
        self.iom_stack: list[str] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or self.reached:
            return
        filename = frame.f_code.co_filename
        if not filename.startswith(PACKAGE) or _importing(frame):
            return
        if frame.f_code.co_name in IOM_METHODS and isinstance(frame.f_locals.get("self"),
                                                              IterativeOptimization):
            self.reached = True
            self.iom_stack = _canetlib_stack(frame)
            sys.setprofile(None)
            return
        name = filename[len(PACKAGE):]
        if name not in self.files:
            self.files.append(name)
        stack = _canetlib_stack(frame)
        if len(stack) > self.deepest:
            self.deepest, self.deepest_stack = len(stack), stack


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import (a module body or what it calls)."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib") or (
                code.co_name == "<module>" and code.co_filename.startswith(PACKAGE)):
            return True
        frame = frame.f_back
    return False


def _canetlib_stack(frame: FrameType | None) -> list[str]:
    """``file:function`` of every canetlib frame on the stack, outermost first."""
    stack = []
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith(PACKAGE):
            stack.append(f"{code.co_filename[len(PACKAGE):]}:{code.co_name}")
        frame = frame.f_back
    return stack[::-1]


def trace(argv: list[str]) -> tuple[CallPath, int]:
    """Run ``python -m canetlib argv`` here, recording its call path; returns the exit status."""
    path = CallPath()
    sys.setprofile(path)
    try:
        status = canetlib_main(argv)
    finally:
        sys.setprofile(None)
    return path, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true",
                        help="print the files in order of first entry and the deepest stack")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the canetlib command line, e.g. evaluate --checkpoint ...")
    args = parser.parse_args()
    if not args.command:
        parser.error("give a canetlib command, e.g. evaluate --checkpoint NAME ...")
    path, status = trace(args.command)
    if not path.reached:
        print(f"the command (exit status {status}) never reached the IOM", file=sys.stderr)
        return 1
    if args.list:
        print("files, in order of first entry:\n  " + "\n  ".join(path.files))
        print("deepest stack:\n  " + "\n  ".join(path.deepest_stack))
        print("stack at the first IOM call:\n  " + "\n  ".join(path.iom_stack))
    on_path = {entry.split(":")[0] for entry in path.iom_stack}
    print(f"files entered before the first IOM convolution: {len(path.files)}")
    print(f"files on the call path to it: {len(on_path)} ({len(path.iom_stack)} frames)")
    print(f"deepest canetlib stack: {path.deepest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
