"""Seeded torch k-means and the elbow rule against scikit-learn and hand-made curves."""

import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from group3ad.model import elbow_k, kmeans, kmeans_elbow

from model_shapes import one_thread  # noqa: F401  (autouse fixture)


def blobs(k, per=50, dim=16, spread=0.3, sep=10.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g, dtype=torch.float64) * sep
    x = centres.repeat_interleave(per, 0) + spread * torch.randn(k * per, dim, generator=g, dtype=torch.float64)
    return x, torch.arange(k).repeat_interleave(per)


@pytest.mark.parametrize("true_k", [2, 3, 4, 6])
def test_elbow_finds_the_number_of_clear_clusters(true_k):
    x, truth = blobs(true_k, seed=true_k)
    res, curve = kmeans_elbow(x, k_max=10, seed=0)
    assert res.centers.shape[0] == true_k
    assert adjusted_rand_score(truth.numpy(), res.labels.numpy()) == 1.0
    assert len(curve) == 10 and all(a >= b - 1e-9 for a, b in zip(curve, curve[1:]))


def test_wcss_matches_definition_and_sklearn():
    x, _ = blobs(4, seed=1)
    res = kmeans(x, 4, seed=3)
    want = sum(((x[res.labels == j] - x[res.labels == j].mean(0)) ** 2).sum() for j in range(4))
    assert res.wcss == pytest.approx(float(want), rel=1e-9)
    sk = KMeans(4, n_init=10, random_state=0).fit(x.numpy())
    assert res.wcss == pytest.approx(sk.inertia_, rel=1e-6)


def test_deterministic_under_seed_and_float32():
    x = torch.randn(300, 8)
    a, b = kmeans(x, 5, seed=11), kmeans(x, 5, seed=11)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers)
    assert a.centers.dtype == torch.float32
    c = kmeans(x, 5, seed=12)
    assert c.labels.shape == (300,)


def test_more_clusters_than_distinct_points():
    x = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    res = kmeans(x, 3, seed=0)
    assert res.wcss == 0.0 and res.labels.unique().numel() >= 2


def test_elbow_rule_on_hand_curves():
    # two drops by a factor 10, then ~flat: log W falls 6.9 -> 4.6 -> 2.3 -> 2.2 ... -> 1.8
    assert elbow_k([1000.0, 100.0, 10.0, 9.0, 8.0, 7.0, 6.0]) == 3
    assert elbow_k([100.0, 20.0, 10.0, 5.0, 0.0]) == 5   # W = 0: perfect clusters at K = 5
    assert elbow_k([100.0, 90.0, 80.0, 10.0, 9.0, 8.0]) == 4
    assert elbow_k([5.0, 5.0, 5.0]) == 2    # flat: no structure
    assert elbow_k([3.0, 1.0]) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be"):
        kmeans(torch.randn(5, 2), 6)
    with pytest.raises(ValueError, match="x must"):
        kmeans(torch.randn(5), 2)
    with pytest.raises(ValueError, match="k_max"):
        kmeans_elbow(torch.randn(5, 2), k_max=1)
    with pytest.raises(ValueError, match="wcss"):
        elbow_k([1.0])
