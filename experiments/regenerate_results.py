"""Re-run every result of a results tree with other checkpoints under the same names.

Each JSON written by ``python -m canetlib evaluate --json`` records its settings (fold, shots,
episodes, seeds, checkpoint name, fusion, scales, box supports, dense CRF, yardsticks); this
job turns them back into the command, runs it with ``CANETLIB_CHECKPOINTS`` pointing at
``--weights`` (the new files, named as the shipped ones) and writes the new result at the same
relative path under ``--out``. ``iom-history-probe.json`` files are re-run the same way by
``scripts/iom_history_probe.py``. A file neither can re-create (a retired option, an
experiment with its own training) is listed in ``OUT/regenerated.json``, never copied.

Every size is the new checkpoint's own (recorded by ``set-input-size``): the input size of the
old result is not passed on. Outputs that exist are skipped, so a killed job goes on where it
stopped; a failed command is reported and the others still run (exit status 1); ``--out``
must not be the results tree itself (inputs are never overwritten)::

    python experiments/regenerate_results.py canetlib/teaching/results/imagenet-backbone \\
        --weights runs/ship/weights --out runs/ship/results [--only 'fold0/*'] [--dry-run]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: settings of an evaluate result that no current command line can reproduce
RETIRED = {"glyphs": "all"}


def evaluate_command(result: dict[str, Any]) -> list[str]:
    """The ``canetlib evaluate`` arguments that re-create ``result`` (its ``settings``).

    Raises:
        ValueError: a setting the command line cannot express (named in the message).
    """
    s = result["settings"]
    if Path(s["checkpoint"]).suffix or "/" in s["checkpoint"]:
        raise ValueError(f"checkpoint {s['checkpoint']} is a file of its own experiment")
    for key, usual in RETIRED.items():
        if s.get(key, usual) != usual:
            raise ValueError(f"{key}={s[key]!r} is a retired option of evaluate")
    seeds = list(s["seeds"])
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f"seeds {seeds} are not consecutive")
    argv = ["evaluate", "--dataset", s["dataset"], "--fold", str(s["fold"]),
            "--shots", str(s["shots"]), "--episodes", str(s["episodes_per_seed"]),
            "--seed", str(seeds[0]), "--seeds", str(len(seeds)),
            "--checkpoint", s["checkpoint"], "--iterations", str(s["iterations"])]
    if s.get("root"):
        argv += ["--root", s["root"]]
    if s.get("class_set", "test") != "test":
        argv += ["--class-set", s["class_set"]]
    if s.get("fusion"):
        argv += ["--fusion", s["fusion"]]
    if s.get("multi_scale"):
        argv.append("--multi-scale")
    elif list(s.get("scales", [1.0])) != [1.0]:
        argv += ["--scales", ",".join(str(x) for x in s["scales"])]
    if s.get("box_support"):
        argv.append("--box-support")
    if s.get("dense_crf"):
        argv += ["--dense-crf", "--crf-backend", crf_backend(s["postprocess"])]
    for key, flag in (("support_damage", "--support-damage"), ("part_recolour", "--part-recolour")):
        if s.get(key):
            argv += [flag, str(s[key])]
    if "baselines" in result:
        argv += ["--baseline", "prototype"]
    return argv + ["--batch-size", str(s.get("batch_size", 8)), "--no-progress"]


def crf_backend(recorded: dict[str, Any]) -> str:
    """The backend of a recorded dense CRF whose parameters are the command line's defaults.

    A result without ``backend`` predates the choice, when the exact CRF was the only one.
    """
    from canetlib.evaluation.crf import DenseCRF

    defaults = {k: v for k, v in asdict(DenseCRF()).items() if k != "backend"}
    params = {k: v for k, v in recorded.items() if k != "backend"}
    if params != defaults:
        raise ValueError(f"dense CRF parameters {params} are not evaluate's defaults")
    return str(recorded.get("backend", "exact"))


def probe_command(result: dict[str, Any]) -> list[str]:
    """The ``scripts/iom_history_probe.py`` arguments that re-create ``result``."""
    return ["scripts/iom_history_probe.py", "--checkpoint", result["checkpoint"],
            "--fold", str(result["fold"]), "--episodes", str(result["episodes"]),
            "--seed", str(result["seed"])]


def command_for(path: Path) -> list[str]:
    """Arguments after ``python`` that re-create the result file ``path`` (without ``--json``).

    Raises:
        ValueError: the file is not one this job can re-create, and why.
    """
    result = json.loads(path.read_text())
    if "miou_after_one_pass" in result:
        return probe_command(result)
    if "settings" not in result or "episodes_per_seed" not in result["settings"]:
        raise ValueError("not written by canetlib evaluate")
    return ["-m", "canetlib", *evaluate_command(result)]


def plan(results: Path, only: str | None) -> tuple[list[tuple[str, list[str]]], dict[str, str]]:
    """``[(relative path, command)]`` for every JSON under ``results``, and the skipped ones."""
    todo, skipped = [], {}
    for path in sorted(results.rglob("*.json")):
        rel = path.relative_to(results).as_posix()
        if only and not fnmatch.fnmatch(rel, only):
            continue
        try:
            todo.append((rel, command_for(path)))
        except (ValueError, KeyError) as e:
            skipped[rel] = str(e) if isinstance(e, ValueError) else f"no setting {e}"
    return todo, skipped


def run_all(todo: list[tuple[str, list[str]]], weights: Path, out: Path,
            dry: bool) -> dict[str, int]:
    """Run each command into ``out`` with the checkpoints of ``weights``; skip done files.

    A failed command does not stop the others: ``{relative path: exit status}`` of the failures.
    """
    env = {**os.environ, "CANETLIB_CHECKPOINTS": str(weights.resolve())}
    failed = {}
    for rel, argv in todo:
        target = out / rel
        command = [sys.executable, *argv, "--json", str(target.resolve())]
        if target.exists():
            print(f"skip (exists): {rel}", flush=True)
            continue
        print("+ " + " ".join(command[1:]), flush=True)
        if not dry:
            target.parent.mkdir(parents=True, exist_ok=True)
            status = subprocess.run(command, check=False, cwd=ROOT, env=env).returncode
            if status:
                print(f"failed (exit {status}): {rel}", flush=True)
                failed[rel] = status
    return failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("results", help="the results tree to re-create")
    p.add_argument("--weights", required=True, help="folder of the new checkpoints")
    p.add_argument("--out", required=True, help="new results tree (same relative paths)")
    p.add_argument("--only", default=None, help="glob of relative paths, e.g. 'fold0/*'")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    results, out, weights = Path(args.results), Path(args.out), Path(args.weights)
    problem = (f"results tree {results} is not a folder" if not results.is_dir() else
               f"weights folder {weights} is not a folder" if not weights.is_dir() else
               f"--out {out} is the results tree itself" if out.resolve() == results.resolve()
               else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    todo, skipped = plan(results, args.only)
    for rel, why in skipped.items():
        print(f"not re-created: {rel} ({why})", flush=True)
    failed = run_all(todo, weights, out, args.dry_run)
    if not args.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"results": str(results), "weights": str(weights),
                    "commands": {rel: argv for rel, argv in todo}, "not_recreated": skipped,
                    "failed": failed}
        (out / "regenerated.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if failed:
        print(f"error: {len(failed)} command(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
