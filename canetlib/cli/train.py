"""``train``: train CANet (or pretrain the offline backbone) from a named config.

``python -m canetlib train --config NAME --fold F --out DIR [--max-steps N]
[--save-every N] [--resume] [--overwrite] [--set key=value ...] [--FIELD VALUE ...]``;
under ``torchrun --nproc_per_node=N -m canetlib train ...`` it trains with
DistributedDataParallel. ``--config synthetic-pretrain`` runs the backbone
pretraining of the offline miniature (:mod:`canetlib.training.pretrain`) instead.

Every field of the named config is a flag of its own (``--lr 0.001``), generated
by tyro from the config dataclass (:meth:`canetlib.training.settings.Settings.parse_flags`);
``--help`` lists them after the options, with the defaults of ``--config NAME``
when it comes first. The options below are argparse's; whatever they do not know
is handed to tyro (``cli.main`` passes it as ``args.config_flags``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from canetlib.training.configs import CONFIGS, PretrainConfig, get_config

HELP = "train CANet from a named config (paper recipe), resumable, torchrun-ready"


class _HelpWithFields(argparse.Action):
    """``-h/--help``: the options, then the config's fields as tyro's flags, with the defaults
    of ``--config NAME`` when it comes before ``--help`` (else those of pascal-1shot)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        name = getattr(namespace, "config", None)
        name = name if name in CONFIGS else "pascal-1shot"
        parser.print_help()
        print(f"\nfields of {name}, each a flag (--lr 0.001) or --set KEY=VALUE (--set lr=0.001);"
              f"\n`train --config NAME --help` shows NAME's defaults:\n"
              f"{CONFIGS[name].flags_help()}")
        parser.exit()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="NAME",
                   help=f"named config: {', '.join(CONFIGS)}")
    p.add_argument("--fold", type=int, default=None,
                   help="fold whose 15 training classes are used (default: the config's, 0)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: last.pt (resumable), model.pt (final), log.csv")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="stop at global step N (the lr schedule still spans all epochs)")
    p.add_argument("--save-every", type=int, default=None, metavar="N",
                   help="write DIR/last.pt every N steps (default: the config's)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in DIR exactly where its last.pt stopped")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in DIR")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config field (repeatable), "
                   "e.g. --set lr=0.001 --set backbone_widths=8,16,16,16; or use the "
                   "field's flag, e.g. --lr 0.001 (listed below)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument_group(conflict_handler="resolve").add_argument(
        "-h", "--help", action=_HelpWithFields,
        help="show this help, the config's fields last (with --config NAME first: its defaults)")
    p.set_defaults(config_flags=[])  # the fields' flags (cli.main hands over unknown options)


def run(args: argparse.Namespace) -> int:
    from canetlib.model.runtime import check_device

    check_device(args.device)
    try:
        return _train(args)
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
        return 130


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues the run of ``args`` where its last.pt stopped."""
    words = ["python", "-m", "canetlib", "train", "--config", args.config, "--out", args.out]
    if args.fold is not None:
        words += ["--fold", str(args.fold)]
    for item in args.overrides:
        words += ["--set", item]
    words += getattr(args, "config_flags", [])
    for flag, value in (("--max-steps", args.max_steps), ("--save-every", args.save_every)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join([*words, "--resume"])


def interrupted_message(args: argparse.Namespace) -> str:
    """What Ctrl-C during training prints: the last checkpoint and how to resume."""
    last = Path(args.out) / "last.pt"
    if not last.is_file():
        return (f"interrupted (Ctrl-C) before the first checkpoint; nothing to resume in "
                f"{args.out} (start again with --overwrite)")
    return (f"interrupted (Ctrl-C); the last checkpoint is {last} (intact); resume with: "
            f"{resume_command(args)}")


def _train(args: argparse.Namespace) -> int:
    changes = {}
    if args.save_every is not None:
        changes["save_every"] = args.save_every
    cfg = get_config(args.config, args.overrides, **changes)
    if args.config_flags:  # after --set: the flags win
        cfg = cfg.parse_flags(args.config_flags)
    if isinstance(cfg, PretrainConfig):
        if args.fold is not None:
            raise ValueError("--fold does not apply to synthetic-pretrain: the pretraining "
                             "classes are disjoint from all 20 benchmark classes")
        from canetlib.training.pretrain import pretrain

        pre = pretrain(cfg, args.out, max_steps=args.max_steps, resume=args.resume,
                       overwrite=args.overwrite, device=args.device,
                       progress=not args.no_progress)
        print(f"pretrained {cfg.name}: step {pre.step}/{pre.total_steps}, "
              f"final loss {pre.final_loss:.4f}; backbone -> {pre.backbone_path}")
        return 0
    if args.fold is not None:
        cfg = cfg.replace(fold=args.fold)
    from canetlib.training.engine import dist_info
    from canetlib.training.recipe import train

    res = train(cfg, args.out, max_steps=args.max_steps, resume=args.resume,
                overwrite=args.overwrite, device=args.device, progress=not args.no_progress)
    if dist_info().main:
        last = f"{res.losses[-1]:.4f}" if res.losses else "n/a (nothing left to do)"
        print(f"trained {cfg.name} fold {cfg.fold}: step {res.step}/{res.total_steps}, "
              f"last loss {last}; checkpoint {res.out / 'last.pt'}, model {res.out / 'model.pt'}")
    return 0
