"""The paper's metrics and its table layout (Real3D-AD conventions, scikit-learn).

Per category: O-AUROC and O-AUPR over the test objects' scores (``roc_auc_score`` and
``average_precision_score``, anomalous = 1); P-AUROC and P-AUPR over all test points of the
category concatenated into one vector. The mean is the plain average over categories.
A metric that is undefined for a category (its test set holds one class only) is NaN and is
left out of the mean, and the table shows it as "n/a".
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

METRICS = ("O-AUROC", "O-AUPR", "P-AUROC", "P-AUPR")
TABLE_TITLES = {  # the paper's Tables 1-4
    "O-AUROC": "Table 1: O-AUROC on {data}",
    "O-AUPR": "Table 2: O-AUPR on {data}",
    "P-AUROC": "Table 3: P-AUROC on {data}",
    "P-AUPR": "Table 4: P-AUPR on {data}",
}


def _binary(labels, scores, fn) -> float:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in size: {labels.shape} vs {scores.shape}")
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")
    return float(fn(labels, scores))


def category_metrics(object_labels, object_scores, point_labels: list, point_scores: list) -> dict:
    """The four metrics of one category.

    object_labels/object_scores: (T,) per test cloud; point_labels/point_scores: one (N_i,)
    array per test cloud, concatenated here."""
    if len(point_labels) != len(point_scores):
        raise ValueError("point_labels and point_scores must list the same clouds")
    pl = np.concatenate([np.asarray(x).ravel() for x in point_labels]) if point_labels else np.zeros(0)
    ps = np.concatenate([np.asarray(x).ravel() for x in point_scores]) if point_scores else np.zeros(0)
    return {
        "O-AUROC": _binary(object_labels, object_scores, roc_auc_score),
        "O-AUPR": _binary(object_labels, object_scores, average_precision_score),
        "P-AUROC": _binary(pl, ps, roc_auc_score),
        "P-AUPR": _binary(pl, ps, average_precision_score),
    }


def mean_metrics(per_category: dict) -> dict:
    """per_category: category -> metric dict. The mean over categories of each metric, NaNs
    (undefined for a category) left out; NaN when no category defines it."""
    out = {}
    for m in METRICS:
        vals = [v[m] for v in per_category.values() if not math.isnan(v[m])]
        out[m] = float(np.mean(vals)) if vals else float("nan")
    return out


def _cell(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def markdown_table(results: dict, metric: str, data_name: str = "Real3D-AD") -> str:
    """One of the paper's Tables 1-4: rows are methods, columns the categories and Average.

    results: method -> {"categories": {cat: metrics}, "mean": metrics}."""
    cats = sorted({c for r in results.values() for c in r["categories"]})
    head = ["Method"] + [c.capitalize() for c in cats] + ["Average"]
    lines = [f"### {TABLE_TITLES[metric].format(data=data_name)}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, r in results.items():
        cells = [_cell(r["categories"].get(c, {}).get(metric, float("nan"))) for c in cats]
        lines.append("| " + " | ".join([method] + cells + [_cell(r["mean"][metric])]) + " |")
    return "\n".join(lines) + "\n"


def markdown_tables(results: dict, data_name: str = "Real3D-AD") -> str:
    """The four tables (O-AUROC, O-AUPR, P-AUROC, P-AUPR), in the paper's order."""
    return "\n".join(markdown_table(results, m, data_name) for m in METRICS)
