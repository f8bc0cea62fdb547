"""``group3ad data-summary DIR``: per-category counts, point-count ranges and anomaly fractions."""

from __future__ import annotations

import json

NAME = "data-summary"
HELP = "Statistics table of a Real3D-AD or Anomaly-ShapeNet dataset folder"


def add_arguments(parser):
    parser.add_argument("root", metavar="DIR", help="dataset root (Real3D-AD or Anomaly-ShapeNet layout)")
    parser.add_argument("--category", action="append", help="only this category (repeatable)")
    parser.add_argument("--no-fractions", action="store_true",
                        help="skip the anomalous-fraction column (it reads every gt file)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def run(args) -> int:
    from ..data import open_dataset
    from ..data.summary import format_table, summarize

    ds = open_dataset(args.root)
    rows = summarize(ds, fractions=not args.no_fractions, categories=args.category)
    if args.json:
        print(json.dumps({"root": str(ds.root), "layout": ds.kind, "categories": rows}, indent=1))
    else:
        print(f"{ds.root} ({ds.kind}, {len(rows)} categories)\n")
        print(format_table(rows))
    return 0
