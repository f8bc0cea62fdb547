"""group3ad merge: one set of Tables 1-4 from the results.json of several evaluate runs."""

from __future__ import annotations

NAME = "merge"
HELP = ("merge the results.json of evaluate runs split by category or method (a later file's "
        "method x category cells replace an earlier one's) into one results.json and results.md")


def add_arguments(p) -> None:
    p.add_argument("reports", nargs="+", metavar="RESULTS_JSON", help="evaluate reports, earliest first")
    p.add_argument("--out", metavar="DIR", required=True, help="where the merged results.json and results.md go")
    p.add_argument("--methods", nargs="*", metavar="NAME",
                   help="methods to keep, in this order (default: all, in order of first appearance)")
    p.add_argument("--name", default="Real3D-AD", metavar="NAME",
                   help="dataset name in the table titles (default Real3D-AD)")


def run(args) -> int:
    from ..errors import UserError
    from ..evaluate import write_report
    from ..merge import load_report, merge_reports
    from ..metrics import markdown_tables

    report = merge_reports([load_report(p) for p in args.reports], labels=args.reports)
    if args.methods:
        missing = [m for m in args.methods if m not in report["methods"]]
        if missing:
            raise UserError(f"method(s) {missing} are in none of the reports; they hold {list(report['methods'])}")
        report["methods"] = {m: report["methods"][m] for m in args.methods}
    write_report(report, args.out, args.name)
    print(markdown_tables(report["methods"], data_name=args.name))
    for name, res in report["methods"].items():
        print(f"{name}: " + "; ".join(f"{', '.join(s['categories'])} from {s['report']}" for s in res["sources"]))
    print(f"wrote {args.out}/results.json, results.md")
    return 0
