"""Metrics (paper conventions, scikit-learn) and the three branch fusions."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from group3ad.fusion import BranchStats, fuse, fuse_testset, fuse_testset_rank, fuse_train
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


@pytest.mark.parametrize("seed", range(5))
def test_rank_fusion_of_one_branch_is_scipys_average_rank(seed):
    from scipy.stats import rankdata

    g = np.random.default_rng(seed)
    x = g.integers(0, 6, 40).astype(float)  # many ties
    x[::7] = g.random(6)
    pts, obj = fuse_testset_rank([{"x": (np.array([v]), v)} for v in x])
    np.testing.assert_allclose(obj, (rankdata(x) - 1) / 39)
    np.testing.assert_allclose(np.concatenate(pts), (rankdata(x) - 1) / 39)
    assert fuse_testset_rank([{"x": (np.array([3.0]), 3.0)}])[1].tolist() == [0.0]
    assert fuse_testset_rank([])[1].size == 0


def test_rank_fusion_is_the_mean_of_branch_ranks_over_the_test_set():
    from scipy.stats import rankdata

    g = np.random.default_rng(1)
    samples = [{"feature": (g.random(n), g.random()), "coord": (g.random(n) * 100, g.random() * 100)}
               for n in (5, 8, 3, 6)]
    pts, obj = fuse_testset_rank(samples)
    want_obj = np.mean([(rankdata([s[b][1] for s in samples]) - 1) / 3 for b in ("feature", "coord")], axis=0)
    np.testing.assert_allclose(obj, want_obj)
    allp = {b: (rankdata(np.concatenate([s[b][0] for s in samples])) - 1) / 21 for b in ("feature", "coord")}
    want_pts = (allp["feature"] + allp["coord"]) / 2
    np.testing.assert_allclose(np.concatenate(pts), want_pts)
    assert [len(p) for p in pts] == [5, 8, 3, 6]


def test_rank_fusion_keeps_a_branch_alive_beside_one_extreme_cloud():
    # The small preset's duck: the coordinate branch ranks every defective cloud above every
    # good one, but one misregistered cloud scores far above the rest. Min-max squeezes the
    # others to ~0 and the feature branch decides; ranks keep the coordinate ranking.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    coord = np.array([0.30, 0.31, 0.32, 0.33, 0.40, 0.41, 0.42, 5.6])
    feature = np.array([0.9, 0.2, 0.8, 0.3, 0.1, 0.7, 0.25, 0.35])
    samples = [{"coord": (np.array([c]), c), "feature": (np.array([f]), f)} for c, f in zip(coord, feature)]
    from sklearn.metrics import roc_auc_score

    minmax = roc_auc_score(labels, fuse_testset(samples)[1])
    ranked = roc_auc_score(labels, fuse_testset_rank(samples)[1])
    assert minmax < 0.5 and ranked > 0.75  # 0.44 and 0.78


def test_fuse_dispatches_every_config_fusion():
    from group3ad.config import FUSIONS

    samples = [{"feature": (np.array([1.0, 2.0]), 2.0)}, {"feature": (np.array([4.0]), 4.0)}]
    stats = {"feature": BranchStats(1.0, 2.0)}
    for kind in FUSIONS:
        pts, obj = fuse(kind, samples, stats)
        assert [len(p) for p in pts] == [2, 1] and obj.shape == (2,)
    np.testing.assert_allclose(fuse("train", samples, stats)[1], [0.5, 1.5])
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("max", samples, stats)


def test_branch_stats_from_distances():
    d = np.arange(101, dtype=float)
    s = BranchStats.from_distances(d)
    assert s.loc == 50 and s.scale == pytest.approx(49.0)
    assert BranchStats.from_distances(np.full(5, 2.0)).scale == 2.0
    assert BranchStats.from_distances(np.zeros(5)).scale == 1.0


def test_rank_fusion_keeps_exact_ties_between_branch_rank_sums():
    # imu on the real3d preset: clouds 0 and 6 have rank positions 6 + 4 and 7 + 3. Scaled
    # before summing (6/7 + 4/7 vs 7/7 + 3/7) they differed in the last bit and the tie broke,
    # moving O-AUROC from 0.531 to 0.562; the fusion sums positions first and keeps it.
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    coord = np.array([1.61144412, 1.24648416, 0.78213364, 0.87275457, 0.71850139, 0.93857616, 2.54325008, 0.7252993])
    feature = np.array([3.11456943, 3.44695377, 3.5969491, 1.86869264, 1.97804296, 3.25643349, 3.06095195, 1.82102561])
    labels = [0, 0, 1, 1, 0, 1, 1, 0]  # 0_good 1_good 2_bulge 3_cut 4_good 5_sink 6_add 7_good
    samples = [{"coord": (np.array([c]), c), "feature": (np.array([f]), f)} for c, f in zip(coord, feature)]
    _, obj = fuse_testset_rank(samples)
    rank_sums = rankdata(coord) + rankdata(feature)
    np.testing.assert_array_equal(obj * 14, rank_sums - 2)
    assert obj[0] == obj[6]
    assert roc_auc_score(labels, obj) == roc_auc_score(labels, rank_sums) == 0.53125
