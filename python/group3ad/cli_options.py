"""Options every pipeline command shares (--config, --preset, --device, --seed, --quiet) and
the config they resolve to: preset, then the --config file over it, then --seed/--device."""

from __future__ import annotations

import os

from .config import Group3ADConfig

PRESETS = ("paper", "demo")


def add_common(parser, default_preset: str = "paper") -> None:
    parser.add_argument("--config", metavar="FILE", help="JSON or YAML file of Group3ADConfig settings")
    parser.add_argument("--preset", choices=PRESETS, default=default_preset,
                        help=f"base settings: the paper's, or the small demo's (default {default_preset})")
    parser.add_argument("--device", help="auto (default), cpu or cuda[:N]")
    parser.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    parser.add_argument("--precision", choices=("fp32", "bf16"),
                        help="encoder arithmetic at inference (default fp32; bf16 is faster on "
                             "CPUs with AMX and on GPUs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args) -> Group3ADConfig:
    cfg = Group3ADConfig.demo() if args.preset == "demo" else Group3ADConfig()
    if args.config:
        cfg = Group3ADConfig.from_file(args.config, base=cfg)
    over = {}
    if args.seed is not None:
        over["seed"] = args.seed
    if args.device is not None:
        over["device"] = args.device
    if getattr(args, "precision", None) is not None:
        over["precision"] = args.precision
    cfg = cfg.update(over)
    if args.quiet:
        os.environ["GROUP3AD_NO_PROGRESS"] = "1"
    return cfg
