"""The project's speed goals, checked against a ``python -m canetlib bench --json FILE`` result.

    python experiments/bench_targets.py FILE

Prints each goal as met, not met or not measured, and exits 0: the goals are aims, not tests.
"""

from __future__ import annotations

import argparse
import json
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: goal name -> (comparison, threshold, what it reads from the result)
TARGETS: dict[str, tuple[str, float, str]] = {
    # a reference-style re-run of the whole network per IOM pass, over our episode time
    "eval_speedup_vs_rerun": (">=", 4.0, "eval_speedup_vs_rerun"),
    # our episode time over the backbone alone on query and support
    "eval_vs_floor": ("<=", 1.3, "eval_vs_floor"),
    # the batched evaluator's GFLOP/s over the measured 3x3 convolution rate, fp32
    "conv_share_fp32": (">=", 0.6, "conv_ceiling.fp32.share"),
    # bench --eval-episodes 1000: the whole timed evaluation over its backbone passes
    "evaluation_vs_backbone": ("<=", 1.5, "evaluation.{mode}.vs_backbone"),
    # the same evaluation's wall time, seconds
    "evaluation_seconds": ("<=", 60.0, "evaluation.{mode}.seconds.total"),
}

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


def lookup(result: dict[str, Any], path: str) -> float | None:
    """The number at the dotted ``path`` of ``result`` (``{mode}``: the default mode's),
    ``None`` when the run did not measure it."""
    value: Any = result
    mode = result.get("settings", {}).get("default_mode", "")
    for key in path.format(mode=mode).split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def check_targets(result: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal of :data:`TARGETS`: met, not met, or ``None`` (not measured)."""
    met: dict[str, bool | None] = {}
    for name, (op, threshold, path) in TARGETS.items():
        value = lookup(result, path)
        met[name] = None if value is None else _COMPARE[op](value, threshold)
    return met


def report(result: dict[str, Any]) -> str:
    """One line per goal: its value, the goal and whether it is met."""
    lines = []
    for name, met in check_targets(result).items():
        op, threshold, path = TARGETS[name]
        goal = f"target {op} {threshold:g}"
        if met is None:
            lines.append(f"{name}: not measured ({goal})")
        else:
            value = lookup(result, path)
            lines.append(f"{name} {value:.3g} ({goal}): {'met' if met else 'not met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="the file `canetlib bench --json` wrote")
    args = parser.parse_args(argv)
    print(report(json.loads(args.json.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
