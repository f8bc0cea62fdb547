"""group3ad demo: the paper end to end on the small synthetic preset, nothing to download."""

from __future__ import annotations

import os
import time

from ..cli_options import add_common, config_from_args

NAME = "demo"
HELP = "generate the small synthetic preset, fit, evaluate and print the paper's metric tables"
DEMO_METHODS = ("PatchCore(FPFH)", "PatchCore(FPFH+Raw)", "Group3AD")


def add_arguments(p) -> None:
    p.add_argument("--out", metavar="DIR", default="runs/demo",
                   help="working folder: data/, results.json, results.md, PNGs (default runs/demo)")
    p.add_argument("--data-preset", default="small", choices=("tiny", "small", "real3d"),
                   help="synthetic preset to generate (default small)")
    p.add_argument("--methods", nargs="*", metavar="NAME", default=list(DEMO_METHODS),
                   help="methods (default: " + ", ".join(DEMO_METHODS) + "; `all` for every one)")
    add_common(p, default_preset="demo")


def run(args) -> int:
    from ..data import synth
    from ..evaluate import DEFAULT_METHODS, evaluate
    from ..metrics import markdown_tables

    cfg = config_from_args(args)
    methods = list(DEFAULT_METHODS) if args.methods == ["all"] else args.methods
    data = os.path.join(args.out, "data", args.data_preset)
    t0 = time.perf_counter()
    if not os.path.isdir(data):
        print(f"generating the {args.data_preset!r} synthetic preset in {data} (seed {cfg.seed})")
        synth.generate(data, preset=args.data_preset, seed=cfg.seed)
    report = evaluate(data, cfg, methods=methods, out_dir=args.out, data_name=f"synthetic-{args.data_preset}")
    print()
    print(markdown_tables(report["methods"], f"synthetic-{args.data_preset}"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; results, ROC curves and renderings in {args.out}")
    return 0
