"""``bench``: evaluator and training speed on this device (see :mod:`canetlib.evaluation.bench`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from canetlib.cli.common import add_threads_argument, apply_threads, write_json
from canetlib.evaluation.bench import BACKBONES, EVAL_CHECKPOINT

HELP = ("benchmark evaluation (ours vs re-running the network per IOM pass) and training "
        "speed on this device")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, metavar="FILE", help="write all numbers here")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if any)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per measurement, median reported (default 3 CPU, 20 CUDA)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--size", type=int, default=321, help="image side (paper: 321)")
    p.add_argument("--backbone", default="resnet50", choices=list(BACKBONES))
    p.add_argument("--iterations", type=int, default=4, help="IOM refinements (paper: 4)")
    p.add_argument("--batch", type=int, default=8, help="episodes per call for throughput")
    p.add_argument("--train-batch", type=int, default=4, help="episodes per training step")
    p.add_argument("--width", type=int, default=256, help="head width (paper: 256)")
    p.add_argument("--no-flops", action="store_true",
                   help="skip the FLOP count and the convolution ceiling")
    p.add_argument("--eval-episodes", type=int, default=1000, metavar="N",
                   help="also time `evaluate --episodes N` of the book's checkpoint in each "
                        "mode, split into data, backbone, head and metrics (0: skip)")
    p.add_argument("--eval-checkpoint", default=None,
                   help=f"the synthetic-world checkpoint timed by --eval-episodes (default "
                        f"{EVAL_CHECKPOINT})")
    add_threads_argument(p)


def run(args: argparse.Namespace) -> int:
    from canetlib.evaluation.bench import check_benchmark, run_benchmark
    from canetlib.model.files import probe_output
    from canetlib.model.runtime import check_device

    check_device(args.device)
    check_benchmark(repeats=args.repeats, warmup=args.warmup, size=args.size,
                    backbone=args.backbone, iterations=args.iterations, batch=args.batch,
                    train_batch=args.train_batch, width=args.width,
                    eval_episodes=args.eval_episodes, eval_checkpoint=args.eval_checkpoint,
                    flags=True)
    if args.json:
        probe_output(args.json)
    apply_threads(args)
    result = run_benchmark(
        args.device, repeats=args.repeats, warmup=args.warmup, size=args.size,
        backbone=args.backbone, iterations=args.iterations, batch=args.batch,
        train_batch=args.train_batch, width=args.width, flops=not args.no_flops,
        eval_episodes=args.eval_episodes,
        eval_checkpoint=args.eval_checkpoint or EVAL_CHECKPOINT,
        log=lambda msg: print(msg, file=sys.stderr))
    print(format_summary(result))
    if args.json:
        write_json(result, args.json)
        print(f"results written to {args.json}")
    return 0


def format_summary(r: dict[str, Any]) -> str:
    """The headline numbers, rounded."""
    s = r["settings"]
    lines = [
        (f"device {r['device']} ({r['device_name']}, {r['threads']} threads), {s['backbone']}, "
         f"{s['size']} px, 1-shot, {s['iterations']} refinements, median of {s['repeats']}, "
         f"mode {s['default_mode']}"),
        (f"evaluator (encode once + refine): {r['eval_episodes_per_s']:.3g} episodes/s "
         f"({r['eval_ms']:.0f} ms)"),
        (f"reference-style re-run per pass:  {r['rerun_episodes_per_s']:.3g} episodes/s "
         f"({r['rerun_ms']:.0f} ms)"),
        f"eval_speedup_vs_rerun {r['eval_speedup_vs_rerun']:.2f}",
        (f"eval_vs_floor {r['eval_vs_floor']:.2f} (floor = backbone on query + support, "
         f"{r['floor_ms']:.0f} ms)"),
        (f"batch {s['batch']}: {r['eval_batch_episodes_per_s']:.3g} episodes/s; "
         f"training (batch {s['train_batch']}): {r['train_steps_per_s']:.3g} steps/s"),
    ]
    flops = r.get("flops_g")
    if isinstance(flops, dict):
        lines.append(
            f"GFLOPs: backbone {flops['backbone_per_image']:.1f}/image, IOM pass "
            f"{flops['iom_pass']:.1f} (cached refinement {flops['iom_cached_pass']:.1f}), "
            f"episode {flops['evaluator_episode']:.0f} vs re-run {flops['rerun_episode']:.0f}; "
            f"arithmetic bounds: speedup {flops['ideal_speedup_vs_rerun']:.2f}, vs floor "
            f"{flops['ideal_eval_vs_floor']:.2f}")
    for mode, c in (r.get("conv_ceiling") or {}).items():
        lines.append(f"{mode}: batched evaluator {c['evaluator_gflops_per_s']:.0f} GFLOP/s = "
                     f"{100 * c['share']:.0f}% of this device's 3x3 convolution "
                     f"({c['conv_gflops_per_s']:.0f} GFLOP/s)")
    for key, value in r.items():
        if key.endswith(("_speedup_vs_fp32", "_speedup_vs_amp_channels_last")):
            lines.append(f"{key}: " + ", ".join(f"{k} x{v:.2f}" for k, v in value.items()))
    for mode, e in (r.get("evaluation") or {}).items():
        sec = e["seconds"]
        ratio = f"{e['vs_backbone']:.2f}x" if e["vs_backbone"] else "n/a"
        lines.append(
            f"evaluate --episodes {e['episodes']} ({e['checkpoint']}, {mode}): "
            f"{sec['total']:.1f} s = data {sec['data']:.1f} + backbone {sec['backbone']:.1f} + "
            f"head {sec['head']:.1f} + metrics {sec['metrics']:.1f}; {ratio} the backbone "
            f"passes; final mIoU {e['miou_per_iteration'][-1]:.2f}")
    return "\n".join(lines)
