"""Metrics (paper conventions, scikit-learn) and the two branch fusions."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from group3ad.fusion import BranchStats, fuse_testset, fuse_train
from group3ad.metrics import METRICS, category_metrics, markdown_table, markdown_tables, mean_metrics


def test_point_metrics_concatenate_all_test_points():
    g = np.random.default_rng(0)
    labels = [g.integers(0, 2, 50), np.zeros(30, int), g.integers(0, 2, 70)]
    scores = [g.random(50) + lab for lab in labels[:1]] + [g.random(30), g.random(70)]
    m = category_metrics([1, 0, 1], [0.9, 0.1, 0.5], labels, scores)
    pl, ps = np.concatenate(labels), np.concatenate(scores)
    assert m["P-AUROC"] == pytest.approx(roc_auc_score(pl, ps))
    assert m["P-AUPR"] == pytest.approx(average_precision_score(pl, ps))
    # not the mean of per-sample AUROCs
    per = np.mean([roc_auc_score(labels[i], scores[i]) for i in (0, 2)])
    assert m["P-AUROC"] != pytest.approx(per)


def test_object_metrics_and_perfect_ranking():
    m = category_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [np.array([0, 1])], [np.array([0.0, 1.0])])
    assert m == {"O-AUROC": 1.0, "O-AUPR": 1.0, "P-AUROC": 1.0, "P-AUPR": 1.0}
    m = category_metrics([0, 1], [0.9, 0.1], [np.array([0, 1])], [np.array([1.0, 0.0])])
    assert m["O-AUROC"] == 0.0 and m["P-AUROC"] == 0.0


def test_single_class_is_nan_and_left_out_of_the_mean():
    m = category_metrics([0, 0], [0.1, 0.2], [np.zeros(3)], [np.ones(3)])
    assert all(math.isnan(m[k]) for k in METRICS)
    mean = mean_metrics({"a": m, "b": {k: 0.5 for k in METRICS}})
    assert mean == {k: 0.5 for k in METRICS}


def test_mismatched_sizes_raise():
    with pytest.raises(ValueError, match="differ"):
        category_metrics([0, 1], [0.1], [], [])


def test_markdown_tables_follow_the_paper_layout():
    res = {"Group3AD": {"categories": {"duck": {k: 0.75 for k in METRICS}, "airplane": {k: float("nan") for k in METRICS}},
                        "mean": {k: 0.75 for k in METRICS}}}
    t = markdown_table(res, "O-AUROC")
    assert "Table 1: O-AUROC" in t
    assert "| Method | Airplane | Duck | Average |" in t
    assert "| Group3AD | n/a | 0.750 | 0.750 |" in t
    all4 = markdown_tables(res)
    assert [all4.index(f"Table {i}") for i in (1, 2, 3, 4)] == sorted(all4.index(f"Table {i}") for i in (1, 2, 3, 4))


def test_testset_fusion_is_reg3d_minmax_average():
    samples = [{"feature": (np.array([1.0, 3.0]), 3.0), "coord": (np.array([10.0, 10.0]), 10.0)},
               {"feature": (np.array([2.0, 5.0, 1.0]), 5.0), "coord": (np.array([20.0, 30.0, 10.0]), 30.0)}]
    pts, obj = fuse_testset(samples)
    # feature points min 1 max 5; coord points min 10 max 30
    np.testing.assert_allclose(pts[0], [(0 + 0) / 2, (0.5 + 0) / 2])
    np.testing.assert_allclose(pts[1], [(0.25 + 0.5) / 2, (1 + 1) / 2, (0 + 0) / 2])
    np.testing.assert_allclose(obj, [0.0, 1.0])


def test_testset_fusion_constant_branch_contributes_zero():
    samples = [{"feature": (np.array([1.0]), 1.0)}, {"feature": (np.array([1.0]), 1.0)}]
    pts, obj = fuse_testset(samples)
    np.testing.assert_array_equal(obj, [0.0, 0.0])


def test_train_fusion_is_affine_per_branch_and_single_cloud():
    stats = {"feature": BranchStats(1.0, 2.0), "coord": BranchStats(0.0, 4.0)}
    pts, obj = fuse_train({"feature": (np.array([1.0, 5.0]), 5.0), "coord": (np.array([0.0, 4.0]), 4.0)}, stats)
    np.testing.assert_allclose(pts, [0.0, 1.5])
    assert obj == pytest.approx(1.5)


def test_branch_stats_from_distances():
    d = np.arange(101, dtype=float)
    s = BranchStats.from_distances(d)
    assert s.loc == 50 and s.scale == pytest.approx(49.0)
    assert BranchStats.from_distances(np.full(5, 2.0)).scale == 2.0
    assert BranchStats.from_distances(np.zeros(5)).scale == 1.0
