"""``prepare``: download and/or convert PASCAL-5i or COCO-20i into canetlib's layout, or
fetch and check FSS-1000.

Runs :func:`canetlib.data.prepare.pascal.prepare_pascal`,
:func:`canetlib.data.prepare.coco.prepare_coco` or
:func:`canetlib.data.prepare.fss1000.prepare_fss1000` and prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import json

HELP = ("prepare PASCAL-5i (VOC2012 + SBD), COCO-20i or FSS-1000 under --root "
        "(optionally --download)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=["pascal", "coco", "fss1000"], help="which benchmark")
    p.add_argument("--root", required=True, help="dataset folder (archives extracted here)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official archives into --root first (checksums verified)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--url", default=None,
                   help="fss1000 --download: a direct link to fewshot_data.zip (the authors "
                        "publish it on Google Drive only)")
    p.add_argument("--sha256", default=None, help="fss1000 --download: the archive's sha256")
    p.add_argument("--splits", default=None, metavar="DIR",
                   help="fss1000: a folder with the split lists trn.txt, val.txt, test.txt "
                        "to copy into ROOT/splits")


def run(args: argparse.Namespace) -> int:
    from canetlib.model.files import check_writable

    fss_only = [f"--{k}" for k in ("url", "sha256", "splits") if getattr(args, k) is not None]
    if fss_only and args.dataset != "fss1000":
        raise ValueError(f"{', '.join(fss_only)}: for prepare fss1000 only, not {args.dataset}")
    if args.dataset == "fss1000":
        from canetlib.data.prepare.fss1000 import prepare_fss1000

        check_writable(args.root, folder=True)
        counts = prepare_fss1000(args.root, download=args.download,
                                 progress=not args.no_progress, url=args.url,
                                 sha256=args.sha256, splits=args.splits)
    else:
        if args.dataset == "pascal":
            from canetlib.data.prepare.pascal import prepare_pascal as prepare
        else:
            from canetlib.data.prepare.coco import prepare_coco as prepare  # needs pycocotools
        check_writable(args.root, folder=True)
        counts = prepare(args.root, download=args.download, progress=not args.no_progress)
    print(json.dumps(counts, indent=2, default=str))
    return 0
