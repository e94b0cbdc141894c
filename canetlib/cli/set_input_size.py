"""``set-input-size``: record the input side a trained model is evaluated at.

A model trained on 224-pixel crops may compare best on larger test images; the side is
chosen on validation episodes (never on test episodes) and written into a *copy* of the
checkpoint, with a line saying how it was chosen::

    python -m canetlib set-input-size runs/im1/model.pt --size 288 \\
        --chosen-by "validation episodes of 3 held-out training classes, 300 x 5 seeds" \\
        --out runs/im1/model-288px.pt

``evaluate`` and ``segment`` then feed images at that side unless told otherwise.
"""

from __future__ import annotations

import argparse

HELP = "record the input side a trained model is evaluated at (writes a new checkpoint)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a checkpoint file or shipped name (left unchanged)")
    p.add_argument("--size", type=int, required=True, help="square input side in pixels")
    p.add_argument("--chosen-by", required=True,
                   help="how the side was chosen: the episodes and the rule (kept in the file)")
    p.add_argument("--out", required=True, help="the new checkpoint file (must not exist)")


def run(args: argparse.Namespace) -> int:
    from canetlib.model.checkpoint import load, record_input_size, trained_input_size

    path = record_input_size(args.checkpoint, args.out, args.size, args.chosen_by)
    trained = trained_input_size(load(path))
    print(f"{path}: evaluated at {args.size} px (trained at "
          f"{f'{trained} px' if trained else 'an unrecorded size'})")
    return 0
