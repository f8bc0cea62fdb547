"""Merge ``results.json`` reports of ``evaluate`` runs into one report.

Long evaluations are split by category or by method (one process per core, or a rerun of the
methods a change touched); this puts the pieces back into one set of Tables 1-4. The unit is a
(method, category) cell: its metrics, per-fusion metrics and per-cloud objects travel together,
and a later report's cell replaces an earlier one's, so "the old table with these methods rerun"
is ``merge_reports([old, new])``. Means are recomputed over the merged categories; each method
records where its cells came from (``sources``), and ``merged_from`` every input's config and data.
"""

from __future__ import annotations

import copy
import json

from .config import FUSIONS
from .errors import UserError
from .metrics import mean_metrics


def _check_report(report, where: str) -> None:
    if not isinstance(report, dict) or not isinstance(report.get("methods"), dict):
        raise UserError(f"{where} is not a group3ad evaluate report (no 'methods' mapping)")
    for name, res in report["methods"].items():
        if not isinstance(res, dict) or not isinstance(res.get("categories"), dict):
            raise UserError(f"{where}: method {name!r} has no 'categories' mapping")


def merge_reports(reports: list, labels: list | None = None) -> dict:
    """reports: evaluate() reports (dicts), earliest first; labels: a name for each (e.g. its
    file), recorded in ``sources``. Returns one report in evaluate()'s format: methods in order of
    first appearance, each (method, category) cell from the last report that has it.

    Raises UserError when there is nothing to merge, an input is not a report, or two reports
    disagree on the fusion of their main tables (their "categories" would not be comparable)."""
    if not reports:
        raise UserError("no reports to merge")
    labels = list(labels) if labels is not None else [f"report {i}" for i in range(len(reports))]
    if len(labels) != len(reports):
        raise ValueError(f"labels must have one entry per report ({len(reports)}), got {len(labels)}")
    for rep, label in zip(reports, labels):
        _check_report(rep, label)
    fusions = {rep.get("fusion") for rep in reports}
    if len(fusions) > 1:
        raise UserError(f"the reports use different fusions {sorted(map(str, fusions))}; "
                        "merge reports of one fusion")

    methods: dict = {}
    owner: dict = {}  # method -> {category: index of the report the cell comes from}
    for i, rep in enumerate(reports):
        for name, res in rep["methods"].items():
            out = methods.setdefault(name, {"categories": {}, "objects": {},
                                            "by_fusion": {f: {"categories": {}} for f in FUSIONS}})
            for cat, metrics in res["categories"].items():
                out["categories"][cat] = copy.deepcopy(metrics)
                out["objects"].pop(cat, None)
                if cat in res.get("objects", {}):
                    out["objects"][cat] = copy.deepcopy(res["objects"][cat])
                for f in FUSIONS:
                    got = res.get("by_fusion", {}).get(f, {}).get("categories", {})
                    out["by_fusion"][f]["categories"].pop(cat, None)
                    if cat in got:
                        out["by_fusion"][f]["categories"][cat] = copy.deepcopy(got[cat])
                owner.setdefault(name, {})[cat] = i
    for name, out in methods.items():
        out["mean"] = mean_metrics(out["categories"])
        for f in FUSIONS:
            by = out["by_fusion"][f]
            if by["categories"]:
                by["mean"] = mean_metrics(by["categories"])
        kept: dict = {}  # report index -> its categories kept, in order of first appearance
        for cat, i in owner[name].items():
            kept.setdefault(i, []).append(cat)
        out["sources"] = [{"report": labels[i], "categories": cats,
                           "seconds": reports[i]["methods"][name].get("seconds")} for i, cats in kept.items()]
        # A report's seconds cover all of its categories: the sum stands only where every
        # contributing report kept all of its cells.
        whole = all(src["seconds"] is not None and len(src["categories"]) == len(reports[i]["methods"][name]["categories"])
                    for i, src in zip(kept, out["sources"]))
        out["seconds"] = sum(src["seconds"] for src in out["sources"]) if whole else None
    last = reports[-1]
    return {"config": last.get("config"), "fusion": last.get("fusion"), "data": last.get("data"),
            "methods": methods,
            "merged_from": [{"report": label, "data": rep.get("data"), "config": rep.get("config"),
                             "methods": list(rep["methods"])} for rep, label in zip(reports, labels)]}


def load_report(path: str) -> dict:
    """A results.json, with a UserError (not a traceback) for a missing or malformed file."""
    try:
        with open(path) as f:
            report = json.load(f)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not JSON: {e}") from None
    _check_report(report, path)
    return report
