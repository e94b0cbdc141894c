"""``evaluate``: mIoU / FB-IoU of a checkpoint on seeded test episodes, every IOM iteration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from canetlib.cli.common import add_threads_argument, apply_threads, write_json
from canetlib.data import FOLD_SOURCES
from canetlib.model.config import FUSIONS
from canetlib.model.inputs import MAX_ITERATIONS, check_iterations, check_size

HELP = ("evaluate a checkpoint on seeded test episodes (mIoU, FB-IoU per IOM iteration, "
        "original image size)")

FUSION_CHOICES = ("none", *(f for f in FUSIONS if f is not None))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True,
                   choices=["synthetic", "pascal", "coco", "folder", "fss1000"],
                   help="folder: your images/, masks/ and split.json under --root")
    p.add_argument("--root", default=None,
                   help="dataset folder (pascal/coco/folder/fss1000; synthetic: cache)")
    p.add_argument("--class-set", choices=["test", "val"], default="test",
                   help="folder/fss1000: test on the split's test classes (default) or its "
                        "validation classes (to choose settings)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--episodes", type=int, default=1000, help="test episodes per seed")
    p.add_argument("--seed", type=int, default=0, help="episode seed (first seed with --seeds)")
    p.add_argument("--seeds", type=int, default=1,
                   help="evaluate seeds SEED..SEED+N-1 and report mean and sample std")
    p.add_argument("--checkpoint", required=True, help="shipped checkpoint name or file path")
    p.add_argument("--iterations", type=int, default=4,
                   help=f"IOM refinements after CANet-Init, 0..{MAX_ITERATIONS} (paper: 4)")
    p.add_argument("--multi-scale", action="store_true",
                   help="query at 0.7, 1 and 1.3, probabilities averaged (paper)")
    p.add_argument("--scales", default=None, metavar="S[,S...]",
                   help="query scales to average, e.g. 0.7 or 1,1.3 (--multi-scale = "
                        "0.7,1,1.3)")
    p.add_argument("--box-support", action="store_true",
                   help="support masks are the box of one instance (paper section 4.4)")
    p.add_argument("--support-damage", type=float, default=0.0, metavar="P",
                   help="make each support small, truncated or occluded with probability P "
                        "(seeded; 0: the benchmark's supports)")
    p.add_argument("--part-recolour", type=float, default=0.0, metavar="P",
                   help="synthetic: the world whose colour regions are repainted with "
                        "probability P (0: the usual world)")
    p.add_argument("--fusion", choices=FUSION_CHOICES, default=None,
                   help="override the k-shot fusion of the checkpoint (Table 5)")
    p.add_argument("--dense-crf", action="store_true",
                   help="refine every iteration's prediction with a DenseCRF (Table 4; "
                        "canetlib.evaluation.crf.DenseCRF defaults)")
    p.add_argument("--crf-backend", choices=["exact", "pydensecrf", "auto"], default="exact",
                   help="with --dense-crf: 'exact' (in-house mean field on a <= 40 px grid, "
                        "the default), 'pydensecrf' (the full-resolution fully connected CRF "
                        "of pydensecrf2: pip install \"canetlib[crf]\") or 'auto' "
                        "(pydensecrf when installed)")
    p.add_argument("--baseline", choices=["prototype"], default=None,
                   help="also score the training-free prototype matcher on the checkpoint's "
                        "frozen backbone, on the same episodes (threshold fitted on "
                        "training-class episodes)")
    p.add_argument("--batch-size", type=int, default=8, help="episodes per forward pass")
    p.add_argument("--input-size", default=None,
                   help="model input side, or 'native' (default: the checkpoint's own size, "
                        "recorded or trained at, else 321; 128 for synthetic)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    p.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast on a CPU with native bf16 instructions (about twice "
                        "as fast; scores move by about 0.1 point)")
    add_threads_argument(p)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--per-episode", action="store_true",
                   help="also write every episode's IoU per iteration to the JSON")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _input_size(args: argparse.Namespace) -> int | str | None:
    """``--input-size``: a side, ``"native"`` or ``None`` (the checkpoint's own size,
    which :func:`canetlib.model.checkpoint.load_model` sets as ``model.input_size``)."""
    if args.input_size in (None, "native"):
        return args.input_size
    try:
        return int(args.input_size)
    except ValueError:
        raise ValueError(f"--input-size must be an integer or 'native', "
                         f"got {args.input_size!r}") from None


def _parse_scales(text: str) -> tuple[float, ...] | None:
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        return None
    return scales if scales and all(v > 0 for v in scales) else None


def _check_options(args: argparse.Namespace) -> None:
    """``--fold`` in range, ``--input-size`` big enough, ``--per-episode`` with ``--json``."""
    from canetlib.data.pascal import NUM_FOLDS

    if args.dataset in FOLD_SOURCES:
        _check_own_dataset(args)
    elif not 0 <= args.fold < NUM_FOLDS:
        raise ValueError(f"--fold must be in 0..{NUM_FOLDS - 1} ({args.dataset} has {NUM_FOLDS} "
                         f"folds), got {args.fold}")
    if args.per_episode and not args.json:
        raise ValueError("--per-episode writes every episode's IoU to the JSON file, which is "
                         "not asked for; add --json FILE (or drop --per-episode)")
    for flag, value in (("--support-damage", args.support_damage),
                        ("--part-recolour", args.part_recolour)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag} must be in [0, 1], got {value}")
    if args.part_recolour and args.dataset != "synthetic":
        raise ValueError(f"--part-recolour is an option of the embedded world (--dataset "
                         f"synthetic), not of {args.dataset}")
    if args.input_size not in (None, "native"):
        side = _input_size(args)
        assert isinstance(side, int)
        check_size(side, side, "--input-size")


def _check_own_dataset(args: argparse.Namespace) -> None:
    """``--root`` given, ``--fold`` and ``--class-set`` in its split (the split file only)."""
    if args.root is None:
        raise ValueError(f"--dataset {args.dataset} needs --root DIR (the folder holding its "
                         "images, masks and split)")
    from pathlib import Path

    if not Path(args.root).is_dir():
        raise FileNotFoundError(f"--root {args.root}: no such folder (the folder holding the "
                                f"{args.dataset} dataset)")
    if args.dataset == "folder":
        from canetlib.data.class_split import read_split_file
        from canetlib.data.folder import SPLIT_FILE

        split = read_split_file(Path(args.root) / SPLIT_FILE)
    else:
        from canetlib.data.fss1000 import read_split_lists

        split = read_split_lists(Path(args.root) / "splits")
    if not 0 <= args.fold < split.num_folds:
        raise ValueError(f"--fold must be in 0..{split.num_folds - 1} ({split.origin} has "
                         f"{split.num_folds} fold(s)), got {args.fold}")
    split.test_ids(args.fold, args.class_set)  # no 'val' classes: refused here


def _validate(args: argparse.Namespace) -> None:
    from canetlib.model.runtime import check_device

    check_device(args.device)
    _check_options(args)
    if args.dense_crf:
        from canetlib.evaluation.crf import DenseCRF

        DenseCRF(backend=args.crf_backend)  # a missing pydensecrf2 is refused here
    for name in ("shots", "episodes", "seeds", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    check_iterations(args.iterations, "--iterations")
    if args.scales is not None and args.multi_scale:
        raise ValueError("--scales and --multi-scale are the same option; pass one of them")
    if args.scales is not None:
        parsed = _parse_scales(args.scales)
        if parsed is None:
            raise ValueError(f"--scales needs positive numbers separated by commas, "
                             f"got {args.scales!r}")
    if args.class_set != "test" and args.dataset not in FOLD_SOURCES:
        raise ValueError(f"--class-set {args.class_set} needs --dataset folder or fss1000 "
                         f"(a split with validation classes), got --dataset {args.dataset}")


def run(args: argparse.Namespace) -> int:
    from canetlib.model import checkpoint
    from canetlib.model.files import probe_output
    from canetlib.model.runtime import default_device

    _validate(args)
    if args.json:
        probe_output(args.json)
    apply_threads(args)
    device = default_device(args.device)
    trained = checkpoint.load(args.checkpoint).get("train_config") or {}
    model = _load_model(args, device)
    settings = _settings(args, model, _trained_fold(args, trained))
    kw = _evaluate_kwargs(args, device)
    seeds = list(range(args.seed, args.seed + args.seeds))
    result = _measure(model, _dataset_factory(args), seeds, kw)
    if args.baseline == "prototype":
        result["baselines"] = {"prototype": _prototype_baseline(model, args, seeds, kw)}
    result["settings"] = {**settings, **result["settings"], "seeds": seeds}
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"results written to {args.json}")
    return 0


def _load_model(args: argparse.Namespace, device: Any) -> Any:
    """The checkpoint's model with ``--fusion`` applied; a 1-shot model needs a fusion
    for ``--shots`` above 1."""
    from canetlib.model import checkpoint

    fusion: Any = ... if args.fusion is None else (None if args.fusion == "none" else args.fusion)
    model = checkpoint.load_model(args.checkpoint, map_location=device, fusion=fusion)
    if args.shots > 1 and model.fusion is None:
        raise ValueError(f"{args.checkpoint} is a 1-shot model; for --shots {args.shots} pass "
                         "--fusion mask-avg, feature-avg or mask-or (or use an attention "
                         "checkpoint)")
    return model


def _trained_fold(args: argparse.Namespace, trained: dict[str, Any]) -> int | None:
    """The fold of the checkpoint's ``train_config`` (``None``: unknown or another dataset);
    a note on stderr when the test classes were seen in training."""
    trained_fold = trained.get("fold") if trained.get("dataset") == args.dataset else None
    if trained_fold is not None and trained_fold != args.fold:
        print(f"note: {args.checkpoint} was trained on fold {trained_fold}: the test classes of "
              f"fold {args.fold} were among its training classes (seen classes, test images)",
              file=sys.stderr)
    return trained_fold


def _settings(args: argparse.Namespace, model: Any, trained_fold: int | None) -> dict[str, Any]:
    """The command's part of the result's ``settings``."""
    return {
        "dataset": args.dataset, "root": args.root, "fold": args.fold, "shots": args.shots,
        "trained_fold": trained_fold,
        "episodes_per_seed": args.episodes, "checkpoint": str(args.checkpoint),
        "fusion": model.fusion, "multi_scale": args.multi_scale,
        "box_support": args.box_support, "dense_crf": args.dense_crf,
        "class_set": args.class_set, "support_damage": args.support_damage,
        "part_recolour": args.part_recolour,
    }


def _evaluate_kwargs(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Keyword arguments of :func:`canetlib.evaluation.evaluate` from the command line."""
    from canetlib.evaluation import MULTI_SCALE

    kw: dict[str, Any] = {
        "iterations": args.iterations,
        "scales": MULTI_SCALE if args.multi_scale else (
            _parse_scales(args.scales) if args.scales else (1.0,)),
        "batch_size": args.batch_size, "input_size": _input_size(args), "device": device,
        "amp": False if args.no_amp else None, "bf16": args.bf16,
        "progress": not args.no_progress,
        "num_workers": args.num_workers, "per_episode": args.per_episode}
    if args.dense_crf:
        from canetlib.evaluation.crf import DenseCRF

        kw["postprocess"] = DenseCRF(backend=args.crf_backend)
    return kw


def _source_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options of the dataset's source given on the command line."""
    return {"part_recolour": args.part_recolour} if args.part_recolour else {}


def _dataset_factory(args: argparse.Namespace) -> Callable[[int], Any]:
    """The test episodes of one seed."""
    from canetlib.data import make_dataset

    options: dict[str, Any] = {"class_set": args.class_set} if args.class_set != "test" else {}
    options.update(_source_options(args))

    def factory(seed: int) -> Any:
        return make_dataset(args.dataset, root=args.root, fold=args.fold, split="test",
                            shots=args.shots, episodes=args.episodes, seed=seed,
                            box_support=args.box_support, support_damage=args.support_damage,
                            **options)

    return factory


def _measure(predictor: Any, factory: Callable[[int], Any], seeds: list[int],
             kw: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """:func:`evaluate` on one seed (``seed`` added) or :func:`evaluate_seeds` on several."""
    from canetlib.evaluation import evaluate, evaluate_seeds

    if len(seeds) == 1:
        out = evaluate(predictor, factory(seeds[0]), **{**kw, **extra}).to_dict()
        out["seed"] = seeds[0]
        return out
    return evaluate_seeds(predictor, seeds, factory, **{**kw, **extra}).to_dict()


def _prototype_baseline(model: Any, args: argparse.Namespace, seeds: list[int],
                        kw: dict[str, Any]) -> dict[str, Any]:
    """The training-free prototype matcher on the model's frozen backbone, on the same
    episodes (threshold fitted on training-class episodes)."""
    from canetlib.evaluation import fit_prototype_baseline

    size = kw["input_size"] if isinstance(kw["input_size"], int) else None
    matcher, fit = fit_prototype_baseline(model, args.dataset, root=args.root,
                                          fold=args.fold, shots=args.shots,
                                          input_size=size, source_options=_source_options(args))
    base = _measure(matcher, _dataset_factory(args), seeds, kw, iterations=0, postprocess=None,
                    scales=(1.0,))
    return {"miou": base["miou"], "miou_std": base.get("miou_std"), "fbiou": base["fbiou"],
            "per_class_iou": base["per_class_iou"], "fit": fit}


def _label(t: int, last: int) -> str:
    if t == 0:
        return "0 (CANet-Init)"
    return f"{t} (final)" if t == last else str(t)


def format_table(result: dict[str, Any]) -> str:
    """A rounded, human-readable summary of an :func:`evaluate` (or seeds) result."""
    s = result["settings"]
    scales = list(s.get("scales", [1.0]))
    scale_note = ("" if s["multi_scale"] or scales == [1.0]
                  else ", scales " + "/".join(f"{v:g}" for v in scales))
    head = (f"{s['dataset']} fold {s['fold']}, {s['shots']}-shot, {s['episodes_per_seed']} "
            f"episodes x {len(s['seeds'])} seed(s) {s['seeds']}, checkpoint {s['checkpoint']}"
            f"{', multi-scale' if s['multi_scale'] else ''}"
            f"{scale_note}"
            f"{', box supports' if s['box_support'] else ''}"
            f"{', supports damaged p=' + format(s['support_damage'], 'g') if s.get('support_damage') else ''}"
            f"{', parts recoloured p=' + format(s['part_recolour'], 'g') if s.get('part_recolour') else ''}"
            f"{', validation classes' if s.get('class_set') == 'val' else ''}"
            f"{', DenseCRF' if s.get('dense_crf') else ''}")
    lines = [head, f"{'iteration':<16}{'mIoU':>14}{'FB-IoU':>14}"]
    std = "miou_per_iteration_std" in result
    last = len(result["miou_per_iteration"]) - 1
    for t, (m, f) in enumerate(zip(result["miou_per_iteration"], result["fbiou_per_iteration"])):
        if std:
            ms = f"{m:.1f} +/- {result['miou_per_iteration_std'][t]:.1f}"
            fs = f"{f:.1f} +/- {result['fbiou_per_iteration_std'][t]:.1f}"
        else:
            ms, fs = f"{m:.1f}", f"{f:.1f}"
        lines.append(f"{_label(t, last):<16}{ms:>14}{fs:>14}")
    lines.append("per-class IoU (final): " + ", ".join(
        f"{name} {v:.1f}" for name, v in result["per_class_iou"].items()))
    def pm(key: str, src: dict[str, Any] = result) -> str:
        std = src.get(f"{key}_std")
        return f"{src[key]:.1f}" + (f" +/- {std:.1f}" if std is not None else "")

    if result.get("all_objects_miou") is not None:
        lines.append(f"baseline, every object of the query marked: mIoU {pm('all_objects_miou')}")
    proto = (result.get("baselines") or {}).get("prototype")
    if proto is not None:
        lines.append(f"baseline, training-free prototype matcher (threshold "
                     f"{proto['fit']['threshold']:.2f} from training classes): mIoU "
                     f"{pm('miou', proto)}")
    missing = result.get("missing_classes") or []
    if missing:
        lines.append("classes without an episode (left out of the mean): " + ", ".join(missing))
    if std:
        lines.append("per seed mIoU: " + ", ".join(
            f"{seed}: {r['miou']:.1f}" for seed, r in zip(result["seeds"], result["runs"])))
    return "\n".join(lines)

