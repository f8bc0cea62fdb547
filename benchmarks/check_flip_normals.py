"""Does registration's second RANSAC attempt (from the negated normals) matter?

    python -m benchmarks.check_flip_normals --data ROOT [--category a b ...] [--name NAME]

TemplateRegistrar.register always runs RANSAC + ICP twice on its first try, from the source's
normals and from their negation (``flip_normals``), and keeps the better result by (fitness,
then lower RMSE). The second attempt is most of the register stage's time (2.3 of 3.6 s on a
1M-point cloud, pipeline_speed_cpu.md). Running it only when the first attempt stays below
``min_fitness`` would save that time, and would change a registration wherever the second
attempt beats a first one that already passed. This counts those clouds, with the demo preset's
registration settings (those of the quality tables), over every non-template training cloud and
every test cloud of each category. Writes benchmarks/results/<name>.md and .json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (os.path.join(ROOT, "python"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402

from benchmarks.common import Table  # noqa: E402


def check_category(ds, category: str, cfg) -> list:
    """One row per registered cloud: both attempts' fitness and RMSE, and their seconds."""
    from group3ad.evaluate import _load
    from group3ad.pipeline import centred, points_of
    from group3ad.registration import TemplateRegistrar, _Prepared

    rc = cfg.registration
    train = [centred(points_of(_load(s).points)) for s in ds.train(category)]
    registrar = TemplateRegistrar(train[0], rc, cfg.seed)
    clouds = [("train", str(i), p) for i, p in enumerate(train) if i > 0]
    clouds += [("test", s.name, centred(points_of(_load(s).points))) for s in ds.test(category)]
    rows = []
    for kind, name, pts in clouds:
        src = _Prepared(pts, registrar.lengths, rc)
        t0 = time.perf_counter()
        first = registrar._attempt(src, cfg.seed)
        t1 = time.perf_counter()
        second = registrar._attempt(src.flipped(registrar.lengths, rc), cfg.seed)
        t2 = time.perf_counter()
        rows.append({"category": category, "kind": kind, "name": name,
                     "fit1": first.fitness, "rmse1": first.rmse, "fit2": second.fitness,
                     "rmse2": second.rmse, "seconds1": t1 - t0, "seconds2": t2 - t1})
    return rows


def summarize(rows: list, min_fitness: float) -> list:
    """Per category (and all): clouds, first attempts that pass, second attempts that win over a
    passing first (by fitness, or at equal fitness by RMSE alone)."""
    out = []
    cats = list(dict.fromkeys(r["category"] for r in rows))
    for cat in cats + ["all"]:
        rs = [r for r in rows if cat in ("all", r["category"])]
        passing = [r for r in rs if r["fit1"] >= min_fitness]
        wins = [r for r in passing if (r["fit2"], -r["rmse2"]) > (r["fit1"], -r["rmse1"])]
        by_fitness = [r for r in wins if r["fit2"] > r["fit1"]]
        out.append({"category": cat, "clouds": len(rs), "first passes": len(passing),
                    "second wins over a passing first": len(wins),
                    "of which by fitness": len(by_fitness),
                    "largest fitness gain": max((r["fit2"] - r["fit1"] for r in by_fitness), default=0.0),
                    "first fails": len(rs) - len(passing)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", nargs="*")
    ap.add_argument("--name", default="registration_flip")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from group3ad.config import Group3ADConfig
    from group3ad.data import open_dataset

    cfg = Group3ADConfig.demo(seed=args.seed)
    ds = open_dataset(args.data)
    rows = [r for cat in (args.category or ds.categories()) for r in check_category(ds, cat, cfg)]
    table = Table(args.name, "Registration: the second RANSAC attempt (negated normals) against a passing first")
    for row in summarize(rows, cfg.registration.min_fitness):
        table.add(**row)
    s1, s2 = np.median([r["seconds1"] for r in rows]), np.median([r["seconds2"] for r in rows])
    table.notes.append(f"Data: {os.path.abspath(args.data)}; demo preset registration (min_fitness "
                       f"{cfg.registration.min_fitness}); median seconds per attempt: first {s1:.2f}, second {s2:.2f}.")
    table.notes.append("Per cloud: " + "; ".join(
        f"{r['category']}/{r['kind']}/{r['name']} {r['fit1']:.4f}/{r['rmse1']:.4f} -> {r['fit2']:.4f}/{r['rmse2']:.4f}"
        for r in rows))
    table.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
