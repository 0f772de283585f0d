"""The ``mardini`` command line. Each sub-command is a thin wrapper over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mardini.config import PRESETS


def _cmd_presets(args: argparse.Namespace) -> int:
    """One row per preset: parameter counts (plain integers), attention pattern, default video."""
    from mardini.models import MarDini

    header = f"{'preset':<14} {'planner_params':>15} {'generator_params':>17} {'attention':<15} " \
             f"{'high_res':>9} {'low_res':>9} {'frames':>6}"
    print(header)
    for name, cfg in PRESETS.items():
        counts = MarDini.from_preset(name, device="meta").num_parameters()
        low_h, low_w = cfg.low_resolution()
        print(f"{name:<14} {counts['planner']:>15d} {counts['generator']:>17d} {cfg.generator.attention:<15} "
              f"{cfg.height:>4}x{cfg.width:<4} {low_h:>4}x{low_w:<4} {cfg.num_frames:>6d}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    """Write an untrained checkpoint folder for a preset (the start of training from scratch)."""
    import torch

    from mardini.checkpoint import save_model
    from mardini.models import MarDini

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UserError(f"'{out}' exists and is not empty; choose a new folder or pass --force to overwrite")
    torch.manual_seed(args.seed)
    save_model(MarDini.from_preset(args.preset), out)
    print(f"wrote untrained {args.preset} checkpoint to {out}")
    return 0


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mardini", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the named model presets and their sizes")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("init", help="write an untrained checkpoint folder for a preset")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--out", required=True, help="checkpoint folder to create")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty folder")
    p.set_defaults(func=_cmd_init)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"mardini {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
