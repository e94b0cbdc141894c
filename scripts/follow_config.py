"""Where a training config travels: every canetlib function that receives it, in call order.

    python scripts/follow_config.py [--list]

trains a tiny model for two steps (``train(cfg, ...)`` of the ``synthetic-1shot`` config, a
small backbone, 8 episodes of 64 px) under :func:`sys.setprofile` and records each canetlib
function called with the config object among its arguments (a *stop*). It prints:

* stops: distinct functions that receive the config, and the files they are in;
* climbs: stops whose caller lives in a lower layer (``model`` < ``data`` < ``evaluation`` <
  ``training`` < ``teaching`` < ``cli``, the folders of the package) than the stop itself;
* returns: in the order the stops are first reached, how often the path comes back to a file
  it had left.

Run it from a checkout: ``PYTHONPATH=OTHER_CHECKOUT python scripts/follow_config.py`` measures
another tree (a file outside the layer folders counts by the name it has in this layout, see
``OLD_LAYERS``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import canetlib

PACKAGE = str(Path(canetlib.__file__).resolve().parent) + "/"
LAYERS = ("model", "data", "evaluation", "training", "teaching", "cli")
#: files of the single-folder layout before the layers, by the layer their code is in now
OLD_LAYERS = {
    "inputs.py": "model", "runtime.py": "model", "extras.py": "model", "fsutil.py": "model",
    "checkpoint.py": "model", "data/training.py": "training", "train.py": "training",
    "train_init.py": "training", "history.py": "training", "pretrain.py": "training",
    "configs.py": "training", "settings.py": "training", "engine": "training",
    "evaluate.py": "evaluation", "metrics.py": "evaluation", "crf.py": "evaluation",
    "bench.py": "evaluation", "throughput.py": "evaluation", "book.py": "teaching",
    "visual.py": "teaching", "widgets": "teaching", "report.py": "teaching",
    "sweep.py": "teaching", "ablations.py": "teaching", "resources.py": "teaching",
    "segment.py": "cli", "commands": "cli", "cli.py": "cli",
}
TINY = ["backbone_widths=8,16,16,16", "width=16", "train_size=64", "episodes=8", "batch_size=2",
        "world_images=3", "backbone_checkpoint=none", "threads=1", "num_workers=0"]


def layer(name: str) -> int:
    """The layer index of a package file (``name`` relative to the package folder)."""
    head = name.split("/", 1)[0]
    if name in OLD_LAYERS or head in OLD_LAYERS:
        return LAYERS.index(OLD_LAYERS.get(name, OLD_LAYERS.get(head, "")))
    return LAYERS.index(head) if head in LAYERS else -1


class Follow:
    """A profile function recording the calls that receive ``target``."""

    def __init__(self, target: object) -> None:
        self.target = target
        self.stops: list[tuple[str, str, str | None]] = []  # (file, function, caller file)

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not frame.f_code.co_filename.startswith(PACKAGE):
            return
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        if not any(frame.f_locals.get(n) is self.target for n in names):
            return
        name = code.co_filename[len(PACKAGE):]
        caller = frame.f_back
        while caller is not None and not caller.f_code.co_filename.startswith(PACKAGE):
            caller = caller.f_back
        key = (name, code.co_qualname if hasattr(code, "co_qualname") else code.co_name,
               None if caller is None else caller.f_code.co_filename[len(PACKAGE):])
        if key[:2] not in {s[:2] for s in self.stops}:
            self.stops.append(key)


def summary(stops: list[tuple[str, str, str | None]]) -> dict[str, int]:
    files = list(dict.fromkeys(s[0] for s in stops))
    climbs = sum(1 for f, _, c in stops if c is not None and layer(c) < layer(f))
    seen: set[str] = set()
    returns, previous = 0, None
    for f, _, _ in stops:
        if f != previous and f in seen:
            returns += 1
        seen.add(f)
        previous = f
    return {"stops": len(stops), "files": len(files), "climbs": climbs, "returns": returns}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--list", action="store_true", help="print every stop in order")
    args = p.parse_args(argv)
    try:
        from canetlib.training.configs import get_config
        from canetlib.training.recipe import train
    except ImportError:  # the single-folder layout
        from canetlib.configs import get_config  # type: ignore[no-redef]
        from canetlib.train import train  # type: ignore[no-redef]
    cfg = get_config("synthetic-1shot", TINY)
    follow = Follow(cfg)
    with tempfile.TemporaryDirectory() as out:
        sys.setprofile(follow)
        try:
            train(cfg, Path(out) / "run", max_steps=2, device="cpu", progress=False)
        finally:
            sys.setprofile(None)
    if args.list:
        for f, fn, c in follow.stops:
            print(f"  {f}:{fn}  (from {c})")
    counts = summary(follow.stops)
    print(f"stops {counts['stops']} in {counts['files']} files, climbs up a layer "
          f"{counts['climbs']}, returns to a file already left {counts['returns']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
