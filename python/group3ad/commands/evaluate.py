"""group3ad evaluate: the paper's Tables 1-4 for a Real3D-AD-layout dataset."""

from __future__ import annotations

from ..cli_options import add_common, config_from_args

NAME = "evaluate"
HELP = "fit and evaluate Group3AD, its ablations and baselines; print the paper's Tables 1-4"


def add_arguments(p) -> None:
    from ..config import FUSIONS
    from ..evaluate import DEFAULT_METHODS

    p.add_argument("--data", required=True, metavar="ROOT", help="dataset root (Real3D-AD layout)")
    p.add_argument("--category", nargs="*", metavar="CAT", help="categories (default: all)")
    p.add_argument("--methods", nargs="*", metavar="NAME", default=list(DEFAULT_METHODS),
                   help="methods to run (default: all): " + ", ".join(DEFAULT_METHODS))
    p.add_argument("--fusion", choices=FUSIONS,
                   help="branch fusion of the tables: Reg3D-AD's min-max over the test set "
                        "(testset, default), ranks over the test set (rank) or single-cloud (train); "
                        "results.json and results.md compare all three")
    p.add_argument("--out", metavar="DIR", default="runs/evaluate",
                   help="where results.json, results.md and PNG figures go (default runs/evaluate)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--name", default="Real3D-AD", metavar="NAME",
                   help="dataset name in the table titles (default Real3D-AD)")
    add_common(p)


def run(args) -> int:
    from ..evaluate import evaluate
    from ..metrics import markdown_tables

    cfg = config_from_args(args)
    report = evaluate(args.data, cfg, methods=args.methods, categories=args.category, out_dir=args.out,
                      fusion=args.fusion, figures=not args.no_figures, data_name=args.name)
    print()
    print(markdown_tables(report["methods"], data_name=args.name))
    print(f"wrote {args.out}/results.json, results.md" + ("" if args.no_figures else " and PNG figures"))
    return 0
