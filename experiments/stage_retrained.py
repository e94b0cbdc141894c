"""Gather the retrained models of every fold under the shipped names, ready to regenerate results.

``experiments/retrain_at_size.py`` leaves, per fold, two stamped models (``im1/model-atS.pt`` and
``im5/model-atS.pt``, each recording the evaluation side chosen on validation classes) and lists
them in its ``summary.json``; folds may come from several jobs. This copies them into one folder
as ``synthetic-imagenet-{1,5}shot-foldF.pt`` (the names ``canetlib.model.checkpoint`` loads) after
checking that each file is what its summary says: its fold, its shots, trained at the summary's
side, evaluated at the chosen one. ``OUT/staged.json`` records every source file and its SHA-256.
A file already in ``OUT`` is kept when identical and refused when not (nothing is overwritten)::

    python experiments/stage_retrained.py runs/retrain224/summary.json [more summaries] \\
        --folds 0,1,2,3 --out runs/ship/weights
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from canetlib.model import checkpoint


class StageError(Exception):
    """A summary or a model file that cannot be staged (the message names it)."""


def shipped_name(shots: int, fold: int) -> str:
    return f"synthetic-imagenet-{shots}shot-fold{fold}.pt"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fold_entries(summaries: list[Path]) -> dict[int, dict[str, Any]]:
    """Each fold's summary entry (its ``source`` added); a fold in two summaries is an error."""
    folds: dict[int, dict[str, Any]] = {}
    for path in summaries:
        if not path.is_file():
            raise StageError(f"{path}: no such summary (experiments/retrain_at_size.py writes it)")
        for key, entry in json.loads(path.read_text()).items():
            fold = int(key.removeprefix("fold"))
            if fold in folds:
                raise StageError(f"fold {fold} is in both {folds[fold]['source']} and {path}")
            folds[fold] = {**entry, "source": str(path)}
    return folds


def model_path(entry: dict[str, Any], fold: int, shots: int) -> Path:
    """The stamped model a summary entry names (an entry without names: ``im1``, ``im5``)."""
    if f"{shots}shot_model" in entry:
        return Path(entry[f"{shots}shot_model"])
    run_dir = Path(entry["source"]).parent / f"fold{fold}" / f"im{shots}"
    return run_dir / f"model-at{entry['eval_size']}.pt"


def check_model(path: Path, shots: int, fold: int, entry: dict[str, Any]) -> None:
    """Raise unless ``path`` is the ``shots``-shot model of ``fold`` that ``entry`` describes."""
    if not path.is_file():
        raise StageError(f"{path}: no such model (is fold {fold}'s job finished?)")
    ckpt = checkpoint.load(path)
    train = ckpt.get("train_config", {})
    found = {"fold": train.get("fold"), "shots": train.get("shots"),
             "train_size": train.get("train_size"), "input_size": ckpt.get("input_size")}
    wanted = {"fold": fold, "shots": shots, "train_size": entry["train_size"],
              "input_size": entry["eval_size"]}
    if found != wanted:
        wrong = ", ".join(f"{k} {found[k]} (summary: {wanted[k]})" for k in wanted
                          if found[k] != wanted[k])
        raise StageError(f"{path}: {wrong}")


def stage(summaries: list[Path], folds: list[int], out: Path) -> dict[str, Any]:
    """Check every model first, then copy them; returns the manifest written to ``OUT``."""
    entries = fold_entries(summaries)
    missing = [f for f in folds if f not in entries]
    if missing:
        raise StageError(f"no summary lists fold(s) {missing}")
    plan = []
    for fold in folds:
        for shots in (1, 5):
            src = model_path(entries[fold], fold, shots)
            check_model(src, shots, fold, entries[fold])
            dst = out / shipped_name(shots, fold)
            if dst.exists() and sha256(dst) != sha256(src):
                raise StageError(f"{dst} exists and differs from {src}; not overwritten")
            plan.append((fold, shots, src, dst))
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    for fold, shots, src, dst in plan:
        if not dst.exists():
            shutil.copyfile(src, dst)
        manifest[dst.name] = {"source": str(src), "sha256": sha256(dst),
                              "train_size": entries[fold]["train_size"],
                              "input_size": entries[fold]["eval_size"],
                              "summary": entries[fold]["source"]}
    (out / "staged.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("summaries", nargs="+", type=Path, help="summary.json of retrain_at_size jobs")
    p.add_argument("--folds", default="0,1,2,3")
    p.add_argument("--out", required=True, type=Path, help="folder of the staged weights")
    args = p.parse_args(argv)
    try:
        manifest = stage(args.summaries, [int(f) for f in args.folds.split(",")], args.out)
    except StageError as e:
        print(f"stage_retrained: {e}", file=sys.stderr)
        return 2
    for name, entry in manifest.items():
        print(f"{args.out / name}  <- {entry['source']} (at {entry['input_size']} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
