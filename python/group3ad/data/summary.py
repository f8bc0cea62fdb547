"""Per-category statistics of a dataset, like the statistics table of Real3D-AD's README."""

from __future__ import annotations

import numpy as np

from .dataset import Dataset
from .pcd_io import read_labelled_txt


def summarize(ds: Dataset, fractions: bool = True, categories=None) -> list[dict]:
    """One row per category: sample counts, point-count min/max/mean of train and test clouds
    and, when ``fractions``, the anomalous-point fraction min/max/mean over defective samples
    (this reads every gt file)."""
    rows = []
    for cat in categories or ds.categories():
        train, test = ds.train(cat), ds.test(cat)
        bad = [s for s in test if s.is_anomalous]
        row = {"category": cat, "train": len(train), "test_good": len(test) - len(bad),
               "test_defect": len(bad), "total": len(train) + len(test),
               "train_points": [s.point_count() for s in train], "test_points": [s.point_count() for s in test]}
        if fractions:
            row["anomalous_fraction"] = [float(read_labelled_txt(s.gt_path, drop_nan=True)[1].mean())
                                         for s in bad if s.gt_path is not None]
        kinds = {}
        for s in bad:
            kinds[s.defect_kind] = kinds.get(s.defect_kind, 0) + 1
        row["defect_kinds"] = dict(sorted(kinds.items()))
        rows.append(row)
    return rows


def _mmm(values, fmt) -> str:
    if not values:
        return "-"
    v = np.asarray(values, dtype=np.float64)
    return f"{fmt(v.min())} / {fmt(v.max())} / {fmt(v.mean())}"


def format_table(rows: list[dict]) -> str:
    """Markdown table of ``summarize`` rows."""
    pts = lambda x: f"{int(round(x)):,}"  # noqa: E731
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    head = ("| # | category | train (good) | test (good) | test (defect) | total | "
            "train points (min/max/mean) | test points (min/max/mean) | anomalous points (min/max/mean) | defect kinds |")
    lines = [head, "|" + "---|" * 10]
    for i, r in enumerate(rows, 1):
        kinds = ", ".join(f"{k} {n}" for k, n in r["defect_kinds"].items()) or "-"
        frac = _mmm(r["anomalous_fraction"], pct) if "anomalous_fraction" in r else "(not read)"
        lines.append(f"| {i} | {r['category']} | {r['train']} | {r['test_good']} | {r['test_defect']} | "
                     f"{r['total']} | {_mmm(r['train_points'], pts)} | {_mmm(r['test_points'], pts)} | "
                     f"{frac} | {kinds} |")
    return "\n".join(lines)
