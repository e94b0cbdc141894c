"""``prepare``: download and/or convert PASCAL-5i or COCO-20i into canetlib's layout.

Runs :func:`canetlib.data.prepare.pascal.prepare_pascal` or
:func:`canetlib.data.prepare.coco.prepare_coco` and prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import json

HELP = "prepare PASCAL-5i (VOC2012 + SBD) or COCO-20i under --root (optionally --download)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=["pascal", "coco"], help="which benchmark")
    p.add_argument("--root", required=True, help="dataset folder (archives extracted here)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official archives into --root first (checksums verified)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from canetlib.fsutil import check_writable

    if args.dataset == "pascal":
        from canetlib.data.prepare.pascal import prepare_pascal as prepare
    else:
        from canetlib.data.prepare.coco import prepare_coco as prepare  # needs pycocotools
    check_writable(args.root, folder=True)
    counts = prepare(args.root, download=args.download, progress=not args.no_progress)
    print(json.dumps(counts, indent=2, default=str))
    return 0
