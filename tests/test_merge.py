"""group3ad merge / merge_reports: evaluate runs split by category merge into the joint run's
report; later cells replace earlier ones; bad inputs are UserErrors."""

import copy
import json
import os
import sys

import pytest

from group3ad import cli, encoding
from group3ad.config import Group3ADConfig
from group3ad.errors import UserError
from group3ad.evaluate import evaluate
from group3ad.merge import load_report, merge_reports

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cli import TINY  # noqa: E402
from test_pipeline import TinyEncoder, _blob  # noqa: E402

METHODS = ["PatchCore(FPFH)", "Group3AD"]


@pytest.fixture(autouse=True)
def tiny_encoder(monkeypatch):
    monkeypatch.setattr(encoding, "new_encoder", lambda seed: TinyEncoder())
    monkeypatch.setenv("GROUP3AD_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def two_categories(tmp_path_factory):
    from group3ad.data import write_labelled_txt, write_pcd

    root = tmp_path_factory.mktemp("d")
    for c, cat in enumerate(("blob", "knob")):
        for d in ("train", "test", "gt"):
            os.makedirs(root / cat / d)
        for i in range(2):
            write_pcd(str(root / cat / "train" / f"{i}_template.pcd"), _blob(1500, 10 * c + i)[0])
        for j, name in enumerate(("0_good", "2_good")):
            write_pcd(str(root / cat / "test" / f"{name}.pcd"), _blob(1500, 10 * c + 5 + j)[0])
        for j, name in enumerate(("1_bulge", "3_bulge")):
            pts, lab = _blob(1500, 10 * c + 7 + j, bump=True)
            write_pcd(str(root / cat / "test" / f"{name}.pcd"), pts)
            write_labelled_txt(str(root / cat / "gt" / f"{name}.txt"), pts, lab)
    return str(root)


def _eval(root, categories):
    return evaluate(root, Group3ADConfig.from_dict(TINY), methods=METHODS, categories=categories,
                    show_progress=False, figures=False, log=lambda *a: None)


def _without_seconds(report):
    return {name: {k: v for k, v in res.items() if k not in ("seconds", "sources")}
            for name, res in report["methods"].items()}


def test_split_by_category_merges_into_the_joint_run(two_categories):
    joint = _eval(two_categories, ["blob", "knob"])
    parts = [_eval(two_categories, ["blob"]), _eval(two_categories, ["knob"])]
    merged = merge_reports(parts, labels=["a.json", "b.json"])
    assert list(merged["methods"]) == METHODS
    assert _without_seconds(merged) == _without_seconds(joint)
    for name in METHODS:
        res = merged["methods"][name]
        assert res["seconds"] == pytest.approx(sum(p["methods"][name]["seconds"] for p in parts))
        assert res["sources"] == [{"report": "a.json", "categories": ["blob"], "seconds": parts[0]["methods"][name]["seconds"]},
                                  {"report": "b.json", "categories": ["knob"], "seconds": parts[1]["methods"][name]["seconds"]}]
    assert [m["report"] for m in merged["merged_from"]] == ["a.json", "b.json"]


def _report(cells, fusion="testset", seconds=1.0):
    """cells: method -> {category: O-AUROC}; the other metrics fixed."""
    methods = {}
    for name, cats in cells.items():
        metrics = {c: {"O-AUROC": v, "O-AUPR": 0.5, "P-AUROC": 0.5, "P-AUPR": 0.1} for c, v in cats.items()}
        methods[name] = {"categories": metrics, "seconds": seconds,
                         "objects": {c: [{"name": f"{c}-{v}"}] for c, v in cats.items()},
                         "by_fusion": {"testset": {"categories": copy.deepcopy(metrics)}}}
    return {"config": {}, "fusion": fusion, "data": "d", "methods": methods}


def test_later_cells_replace_earlier_ones():
    old = _report({"BTF": {"a": 0.1, "b": 0.2}, "G": {"a": 0.3, "b": 0.4}})
    new = _report({"G": {"b": 0.9}}, seconds=5.0)
    merged = merge_reports([old, new], labels=["old", "new"])
    g = merged["methods"]["G"]
    assert {c: m["O-AUROC"] for c, m in g["categories"].items()} == {"a": 0.3, "b": 0.9}
    assert g["mean"]["O-AUROC"] == pytest.approx(0.6)
    assert g["by_fusion"]["testset"]["mean"]["O-AUROC"] == pytest.approx(0.6)
    assert g["objects"]["b"] == [{"name": "b-0.9"}] and g["objects"]["a"] == [{"name": "a-0.3"}]
    assert g["sources"] == [{"report": "old", "categories": ["a"], "seconds": 1.0},
                            {"report": "new", "categories": ["b"], "seconds": 5.0}]
    assert g["seconds"] is None  # old's seconds covered a cell that was replaced
    assert merged["methods"]["BTF"]["mean"]["O-AUROC"] == pytest.approx(0.15)
    assert merged["methods"]["BTF"]["seconds"] == 1.0
    assert old["methods"]["G"]["categories"]["b"]["O-AUROC"] == 0.4  # inputs untouched


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no reports"):
        merge_reports([])
    with pytest.raises(UserError, match="different fusions"):
        merge_reports([_report({"G": {"a": 0.1}}), _report({"G": {"b": 0.2}}, fusion="rank")])
    with pytest.raises(UserError, match="not a group3ad evaluate report"):
        merge_reports([{"rows": []}], labels=["x.json"])
    with pytest.raises(UserError, match="cannot read"):
        load_report(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="is not JSON"):
        load_report(str(tmp_path / "broken.json"))


def test_merge_command(tmp_path, capsys):
    paths = []
    for i, rep in enumerate([_report({"G": {"a": 0.25}}), _report({"G": {"b": 0.75}, "H": {"b": 1.0}})]):
        paths.append(str(tmp_path / f"{i}.json"))
        with open(paths[-1], "w") as f:
            json.dump(rep, f)
    out = tmp_path / "merged"
    assert cli.main(["merge", *paths, "--out", str(out), "--methods", "H", "G", "--name", "synthetic"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "results.json").read_text())
    assert list(rep["methods"]) == ["H", "G"]
    assert rep["methods"]["G"]["mean"]["O-AUROC"] == pytest.approx(0.5)
    assert "Table 1: O-AUROC on synthetic" in (out / "results.md").read_text()
    assert "| G | 0.250 | 0.750 | 0.500 |" in printed
    assert cli.main(["merge", paths[0], "--out", str(out), "--methods", "Nope"]) == 2
    assert "Nope" in capsys.readouterr().err
    assert cli.main(["merge", str(tmp_path / "none.json"), "--out", str(out)]) == 2
