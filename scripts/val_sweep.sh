#!/usr/bin/env bash
# Choose the miniature's 1-shot training settings on validation classes, never on test ones.
#   bash scripts/val_sweep.sh OUT_DIR [FOLD [NAME:key=value,key=value ...]]
# Each variant trains synthetic-1shot on 12 of the fold's 15 training classes and is validated
# every 4 epochs on 1000 episodes of the 3 held-out training classes (val_by=classes: classes
# the model never saw, as the benchmark's test classes; no test class, no test image). The
# variants run side by side (one process each: give each a core); a summary of every
# variant's validation curve goes to OUT_DIR/summary.json and is printed. SWEEP_EXTRA adds
# key=value settings to every variant (a variant's own settings win); SWEEP_SECONDS stops
# every run after that many seconds (the validations done by then are summarised).
set -uo pipefail
out=${1:?usage: bash scripts/val_sweep.sh OUT_DIR [FOLD [NAME:key=value,... ...]]}
fold=${2:-0}
py=${PYTHON:-python3}
mkdir -p "$out"
export CANETLIB_NO_PROGRESS=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
common=(--set val_by=classes --set val_classes=3 --set validate_every=4 --set val_episodes=1000)
for kv in ${SWEEP_EXTRA:-}; do common+=(--set "$kv"); done  # e.g. a smoke test's tiny sizes
declare -A variants=(
  [base]=""
  [dropout0.5]="dropout=0.5"
  [wd0.05]="weight_decay=0.05"
  [lr3e-3]="lr=0.003"
  [width128]="width=128"
  [dropout0.5-wd0.05]="dropout=0.5 weight_decay=0.05"
)
if [ $# -gt 2 ]; then  # variants given as NAME:key=value,key=value (NAME: for the base)
  variants=()
  for spec in "${@:3}"; do variants[${spec%%:*}]="${spec#*:}"; done
fi
for name in "${!variants[@]}"; do
  sets=()
  for kv in ${variants[$name]//,/ }; do sets+=(--set "$kv"); done
  ${SWEEP_SECONDS:+timeout "$SWEEP_SECONDS"} "$py" -m canetlib train --config synthetic-1shot --fold "$fold" --out "$out/$name" --overwrite \
    "${common[@]}" "${sets[@]}" >"$out/$name.log" 2>&1 &
done
wait
"$py" - "$out" <<'PY'
import csv, json, sys
from pathlib import Path

out = Path(sys.argv[1])
summary = {}
for run in sorted(p for p in out.iterdir() if p.is_dir()):
    val = run / "val.csv"
    rows = list(csv.DictReader(val.open())) if val.is_file() else []
    summary[run.name] = [{"epoch": int(r["epoch"]), "miou": round(float(r["miou"]), 2),
                          "fbiou": round(float(r["fbiou"]), 2)} for r in rows]
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
for name, rows in summary.items():
    print(f"{name:22s}", "  ".join(f"ep{r['epoch']}: {r['miou']:5.1f}" for r in rows))
PY
