"""Run every benchmark (or the named ones) and gather their tables into benchmarks/RESULTS.md.

    python -m benchmarks.run_all [--only fps knn ...] [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import importlib
import os
import pkgutil
import sys

from . import common

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = """# Benchmark results

Each table: our op and its peers on the same input, in one process, median of repeated runs
(index and tree builds included where the peer needs one). Ratios > 1 mean group3ad_ext is
faster. Regenerate with `python -m benchmarks.run_all` (or one: `python -m benchmarks.bench_fps`);
each table's notes say when and under what load it was measured. GPU tables come only from
`benchmarks/gpu_check.sh` on a lent GPU machine: none has been measured yet (no GPU was lent).

"""

#: Hand-maintained digest of the tables against the issue targets (dated inside).
SUMMARY = os.path.join(HERE, "SUMMARY.md")


def bench_modules():
    return sorted(m.name for m in pkgutil.iter_modules([HERE]) if m.name.startswith("bench_"))


def gather(path=os.path.join(HERE, "RESULTS.md")) -> None:
    parts = [HEADER]
    if os.path.exists(SUMMARY):
        with open(SUMMARY) as f:
            parts.append(f.read())
    for md in sorted(glob.glob(os.path.join(common.RESULTS_DIR, "*.md"))):
        with open(md) as f:
            parts.append(f.read())
    with open(path, "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="benchmark names, e.g. fps knn (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args(argv)
    for name in bench_modules():
        short = name[len("bench_"):]
        if args.only and short not in args.only:
            continue
        print(f"== {name}", flush=True)
        mod = importlib.import_module(f"benchmarks.{name}")
        mod.main(["--device", args.device] + (["--quick"] if args.quick else []))
    gather()
    return 0


if __name__ == "__main__":
    sys.exit(main())
