"""IUN / IAN losses against hand-computed values and brute force; guarded, finite gradients."""

import math

import pytest
import torch

from group3ad.model import PointMAEEncoder, cluster_centers, feature_distribution, ian_loss, iun_loss

from model_shapes import one_thread  # noqa: F401  (autouse fixture)


def test_iun_hand_computed_value_and_gradient():
    c = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = iun_loss(c)  # distances 5, 10, sqrt(65): min 5
    assert loss.item() == pytest.approx(0.2, abs=1e-12)
    loss.backward()
    # d(1/|a-b|)/da = -(a-b)/|a-b|^3 = (3,4)/125
    torch.testing.assert_close(c.grad, torch.tensor([[0.024, 0.032], [-0.024, -0.032], [0.0, 0.0]], dtype=torch.float64))


def test_iun_matches_brute_force_on_random_centres():
    c = torch.randn(7, 20, dtype=torch.float64)
    want = 1.0 / min((c[i] - c[j]).norm() for i in range(7) for j in range(i + 1, 7))
    assert iun_loss(c).item() == pytest.approx(want.item(), rel=1e-12)


def test_iun_is_guarded_for_coincident_centres():
    c = torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]], requires_grad=True)
    loss = iun_loss(c, eps=1e-3)
    assert loss.item() == pytest.approx(1e3, rel=1e-5)
    loss.backward()
    assert torch.isfinite(c.grad).all()


def test_iun_needs_two_centres():
    with pytest.raises(ValueError, match="centers"):
        iun_loss(torch.zeros(1, 4))


def test_ian_hand_computed_value_and_gradient():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0], [5.0, 6.0]], dtype=torch.float64,
                     requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1])
    loss = ian_loss(x, labels, k=2, temperature=2.0)  # max^2 = 5 (rows 1,2) and 1 (rows 3,4): 2/2*6
    assert loss.item() == pytest.approx(6.0, abs=1e-12)
    loss.backward()
    want = torch.zeros(5, 2, dtype=torch.float64)
    want[1], want[2] = torch.tensor([2.0, -4.0]), torch.tensor([-2.0, 4.0])   # T/K * 2 (a-b)
    want[3], want[4] = torch.tensor([0.0, -2.0]), torch.tensor([0.0, 2.0])
    torch.testing.assert_close(x.grad, want.double())


def test_ian_singleton_cluster_counts_in_k_only():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0], [5.0, 6.0], [9.0, 9.0]])
    loss = ian_loss(x, torch.tensor([0, 0, 0, 1, 1, 2]), k=3, temperature=2.0)
    assert loss.item() == pytest.approx(4.0, rel=1e-6)


def test_ian_matches_brute_force_and_zero_spread_is_finite():
    x = torch.randn(40, 16, dtype=torch.float64)
    labels = torch.randint(0, 4, (40,))
    want = sum(torch.cdist(x[labels == j], x[labels == j]).max() ** 2 for j in range(4)) * 0.5 / 4
    assert ian_loss(x, labels, 4, 0.5).item() == pytest.approx(want.item(), rel=1e-10)
    same = torch.ones(5, 3, requires_grad=True)
    loss = ian_loss(same, torch.zeros(5, dtype=torch.long), 1)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(same.grad).all()


def test_cluster_centers_are_means():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    torch.testing.assert_close(cluster_centers(x, torch.tensor([0, 0, 1]), 2), torch.tensor([[1.0, 0.0], [5.0, 5.0]]))


def test_losses_give_finite_gradients_through_the_encoder():
    enc = PointMAEEncoder(trans_dim=48, depth=12, num_heads=6).eval()
    nb, c = torch.randn(1, 24, 8, 3), torch.randn(1, 24, 3)
    labels = torch.arange(24) % 3
    f = enc(nb, c)[0]
    (iun_loss(cluster_centers(f, labels, 3)) + ian_loss(f, labels, 3)).backward()
    grads = [p.grad for p in enc.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_feature_distribution_on_hand_data():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]], dtype=torch.float64)
    m = feature_distribution(x, labels=torch.tensor([0, 0, 1, 1]))
    assert m["k"] == 2
    assert m["min_center_distance"] == pytest.approx(10.0)
    assert m["mean_intra_spread"] == pytest.approx(1.0)
    assert m["mean_max_intra_distance"] == pytest.approx(2.0)
    assert m["separation_ratio"] == pytest.approx(10.0)
    # normalised features: (0,0) stays 0 under F.normalize; the rest are (1,0): pairs with
    # d^2 = 1 (3 pairs with row 0) and 0 (3 others), each counted twice over 12 ordered pairs
    assert m["uniformity"] == pytest.approx(math.log((6 * math.exp(-2.0) + 6) / 12))
    assert m["alignment"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    auto = feature_distribution(x, k=2)
    assert auto["min_center_distance"] == pytest.approx(10.0)
