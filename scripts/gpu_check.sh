#!/usr/bin/env bash
# The CUDA path, checked on a GPU machine (CI has none). From the repository root:
#   bash scripts/gpu_check.sh OUT_DIR
# 1. tests/test_cuda.py: AMP (bf16/fp16) + channels_last vs fp32, the evaluator on CUDA vs CPU,
#    the trainer with AMP (+ resume), DDP over nccl (one process per GPU; one-rank group on a
#    one-GPU machine);
# 2. `canetlib bench` on CUDA: fp32 and AMP + channels_last, then its numbers against the
#    project's speed goals (experiments/bench_targets.py);
# 3. the shipped checkpoints evaluated on CUDA with AMP (1000 episodes x seeds 0..4), to compare
#    with the CPU numbers in canetlib/model/weights/README.md.
# Every step writes into OUT_DIR; the script goes on after a failing step and exits non-zero.
set -uo pipefail
out=${1:?usage: bash scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out"
export CANETLIB_NO_PROGRESS=1 PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() { echo "== $1"; shift; "$@" || { echo "!! failed: $*"; status=1; }; }

step "environment" "$py" -c "import torch, platform; print(platform.python_version(), \
torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), \
'bf16' if torch.cuda.is_bf16_supported() else 'fp16', torch.cuda.device_count(), 'GPU(s)')"
step "tests/test_cuda.py" "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py -rs
step "bench" "$py" -m canetlib bench --json "$out/bench_cuda.json"
step "bench targets" "$py" experiments/bench_targets.py "$out/bench_cuda.json"
for k in ${GPU_CHECK_SHOTS-1 5}; do  # GPU_CHECK_SHOTS="" skips the evaluations
  step "evaluate ${k}-shot" "$py" -m canetlib evaluate --dataset synthetic --fold 0 --shots "$k" \
    --episodes 1000 --seed 0 --seeds 5 --checkpoint "synthetic-${k}shot-fold0" --num-workers 4 \
    --no-progress --json "$out/eval_${k}shot_cuda.json"
done
exit $status
