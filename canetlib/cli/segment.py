"""``segment``: segment the supports' object in your own query image.

Each ``--support IMG`` is followed by its annotation, ``--support-mask PNG``
or ``--support-box x0,y0,x1,y1``; repeat the group for k shots::

    python -m canetlib segment --checkpoint synthetic-imagenet-1shot-fold0 \\
        --support cat1.jpg --support-mask cat1.png --support cat2.jpg --support-box 10,20,200,180 \\
        --query photo.jpg --out photo_mask.png
"""

from __future__ import annotations

import argparse
from typing import Any

from canetlib.cli.common import add_threads_argument, apply_threads
from canetlib.model.inputs import MAX_ITERATIONS, check_iterations

HELP = "segment your own query image from k support images with masks or boxes"


class _Support(argparse.Action):
    """``--support IMG``: start a new support entry."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        entries = list(getattr(namespace, self.dest) or [])
        entries.append({"image": values, "mask": None, "box": None})
        setattr(namespace, self.dest, entries)


class _Annotation(argparse.Action):
    """``--support-mask`` / ``--support-box``: annotate the latest ``--support``."""

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        entries = getattr(namespace, "supports", None) or []
        if not entries:
            parser.error(f"{option_string} must follow a --support IMG")
        last = entries[-1]
        if last["mask"] is not None or last["box"] is not None:
            parser.error(f"support {last['image']} already has a mask or box; "
                         "give one annotation per --support")
        last[self.kind] = _parse_box(values, parser) if self.kind == "box" else values


def _parse_box(text: str, parser: argparse.ArgumentParser) -> list[float]:
    from canetlib.model.inputs import check_box

    try:
        return check_box([float(v) for v in text.split(",")])
    except ValueError:
        parser.error(f"--support-box expects four finite numbers x0,y0,x1,y1 in pixels, "
                     f"got {text!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="shipped checkpoint name or file path")
    p.add_argument("--support", dest="supports", action=_Support, required=True, metavar="IMG",
                   help="a support image; repeat for k shots, each followed by its annotation")
    p.add_argument("--support-mask", action=_Annotation, kind="mask", metavar="PNG",
                   help="mask of the preceding --support (same size; object = 1 in a 0/1 "
                        "mask, >= 128 in a gray one, any nonzero index in a palette PNG; "
                        "255 = ignore in a 0/1 mask)")
    p.add_argument("--support-box", action=_Annotation, kind="box", metavar="x0,y0,x1,y1",
                   help="box of the object in the preceding --support (pixels, clipped to "
                        "the image; negative values work as --support-box=-5,-5,40,30)")
    p.add_argument("--query", required=True, metavar="IMG", help="the image to segment")
    p.add_argument("--out", required=True, metavar="OUT.png",
                   help="binary mask PNG (0/255); the overlay goes to OUT_overlay.png")
    p.add_argument("--iterations", type=int, default=4,
                   help=f"IOM refinements after CANet-Init, 0..{MAX_ITERATIONS} (paper: 4)")
    p.add_argument("--size", type=int, default=None,
                   help="square model input side, at least 16 (default: the checkpoint's "
                        "recorded input size, else its training crop size, else 321)")
    p.add_argument("--multi-scale", action="store_true", help="query at 0.7, 1 and 1.3")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if any)")
    add_threads_argument(p)


def _inputs(args: argparse.Namespace) -> dict[str, str]:
    """The input files by name: the query, support i and support mask i."""
    named = {"query": args.query}
    for i, s in enumerate(args.supports, 1):
        named[f"support {i}"] = s["image"]
        if s["mask"] is not None:
            named[f"support mask {i}"] = s["mask"]
    return named


def check_annotations(args: argparse.Namespace) -> None:
    """The query and every support are images of at least 16 px a side, and every mask or
    box marks an object of its support (read before the model loads; warnings come later)."""
    import warnings

    from canetlib.cli.segmentation import as_mask
    from canetlib.data.imageio import image_size
    from canetlib.model.inputs import check_size

    check_size(*image_size(args.query), f"query {args.query}")
    for i, s in enumerate(args.supports, 1):
        size = image_size(s["image"])
        check_size(*size, f"support {i} {s['image']}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            as_mask(s["mask"] if s["mask"] is not None else s["box"], size, f"support mask {i}")


def check_arguments(args: argparse.Namespace) -> None:
    """Every input file, setting and output path, before the model loads."""
    from pathlib import Path

    from canetlib.cli.segmentation import check_outputs, overlay_path
    from canetlib.model import MULTI_SCALE
    from canetlib.model.files import check_writable, probe_output
    from canetlib.model.inputs import check_size
    from canetlib.model.runtime import check_device

    check_device(args.device)
    missing = [s["image"] for s in args.supports if s["mask"] is None and s["box"] is None]
    if missing:
        raise ValueError(f"support {missing[0]} has no --support-mask or --support-box after it")
    for path in [args.query] + [s["image"] for s in args.supports] + \
            [s["mask"] for s in args.supports if s["mask"] is not None]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"file not found: {path}")
    check_iterations(args.iterations, "--iterations")
    if args.size is not None:
        check_size(args.size, args.size, "--size")
        if args.multi_scale:
            for scale in MULTI_SCALE:
                side = round(args.size * scale)
                check_size(side, side, f"--size {args.size} with --multi-scale: the query at "
                                       f"scale {scale:g}")
    for path in (args.out, overlay_path(args.out)):
        check_writable(path)
    check_outputs(args.out, _inputs(args))
    check_annotations(args)
    probe_output(args.out)  # the overlay goes to the same folder


def run(args: argparse.Namespace) -> int:
    from canetlib.cli.segmentation import run_segmentation, write_outputs
    from canetlib.model import MULTI_SCALE, checkpoint
    from canetlib.model.runtime import default_device

    check_arguments(args)
    apply_threads(args)
    device = default_device(args.device)
    ckpt = checkpoint.load(args.checkpoint)
    size = args.size if args.size is not None else checkpoint.recorded_input_size(ckpt) or 321
    one_shot = checkpoint.canet_config(ckpt, args.checkpoint).fusion is None
    del ckpt
    k = len(args.supports)
    if k > 1 and one_shot:
        print(f"note: {args.checkpoint} is a 1-shot model; the {k} supports are fused with "
              "Mask-Avg (paper Table 5: each support predicts, probabilities averaged)")
    fusion: Any = "mask-avg" if k > 1 and one_shot else ...
    model = checkpoint.load_model(args.checkpoint, map_location=device, fusion=fusion)
    result = run_segmentation(
        model, args.query, [s["image"] for s in args.supports],
        [s["mask"] if s["mask"] is not None else s["box"] for s in args.supports],
        iterations=args.iterations, size=size,
        scales=MULTI_SCALE if args.multi_scale else (1.0,), all_iterations=False)
    if result.note:
        print(f"note: {result.note}")
    mask_path, overlay_path = write_outputs(args.query, result.mask, args.out)
    share = 100.0 * float(result.mask.mean())
    print(f"{len(args.supports)}-shot, {args.iterations} IOM refinements, input {size}x{size}: "
          f"object covers {share:.1f}% of the query")
    if result.attention is not None:
        print("attention weights: " + ", ".join(f"{w:.2f}" for w in result.attention))
    print(f"mask written to {mask_path}\noverlay written to {overlay_path}")
    return 0
