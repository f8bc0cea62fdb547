"""coreset (greedy k-center) against a naive greedy loop on the same projection and start."""

import pytest
import torch

from group3ad_ext import coreset
from group3ad_ext.coreset import auto_start_index, random_projection


def naive_greedy(z: torch.Tensor, n: int, start: int) -> torch.Tensor:
    """Textbook k-center greedy in float64: includes the start, then argmax of the distance to
    the nearest selected row (first maximum = lowest index); picked rows are never repeated."""
    z = z.double()
    min_d = torch.full((z.shape[0],), float("inf"), dtype=torch.float64)
    chosen = torch.zeros(z.shape[0], dtype=torch.bool)
    out = [start]
    for _ in range(n - 1):
        last = out[-1]
        chosen[last] = True
        min_d = torch.minimum(min_d, ((z - z[last]) ** 2).sum(1))
        cand = torch.where(chosen, torch.tensor(-1.0, dtype=torch.float64), min_d)
        out.append(int(torch.argmax(cand)))
    return torch.tensor(out, dtype=torch.int64)


def clustered(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(12, d, generator=g) * 4
    return c[torch.randint(0, 12, (n,), generator=g)] + torch.randn(n, d, generator=g)


@pytest.mark.parametrize("d,proj", [(1152, 128), (64, None), (3, 128), (300, 16)])
@pytest.mark.parametrize("start", [0, 17])
def test_matches_naive_greedy_on_the_same_projection(d, proj, start):
    feats = clustered(1500, d, seed=d).double()  # float64: the naive sums agree to 1e-16
    sel = coreset(feats, 200, proj_dim=proj, start_idx=start, seed=3)
    ref = naive_greedy(random_projection(feats, proj, seed=3), 200, start)
    assert sel.dtype == torch.int64 and sel.shape == (200,)
    assert torch.equal(sel, ref)


def test_float32_features_match_naive_greedy():
    feats = clustered(2000, 256, seed=1)
    sel = coreset(feats, 300, proj_dim=64, start_idx=5, seed=0)
    ref = naive_greedy(random_projection(feats, 64, seed=0), 300, 5)
    assert torch.equal(sel, ref)


def test_start_point_is_included_and_unique_picks():
    feats = torch.randn(500, 32)
    sel = coreset(feats, 500, proj_dim=None, start_idx=42)
    assert int(sel[0]) == 42
    assert torch.equal(sel.sort().values, torch.arange(500))  # n_select == N: a permutation


def test_duplicates_are_picked_last():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(40, 16, generator=g)
    feats = torch.cat([base, base[:10], base[:10]])  # 60 rows, 40 distinct
    sel = coreset(feats, 45, proj_dim=None)
    assert set(sel[:40].tolist()) == set(range(40))
    assert torch.equal(sel, naive_greedy(feats, 45, 0))


def test_all_identical_rows_follow_index_order():
    sel = coreset(torch.ones(20, 8), 6, proj_dim=None, start_idx=3)
    assert sel.tolist() == [3, 0, 1, 2, 4, 5]


def test_single_row_and_single_pick():
    assert coreset(torch.randn(1, 1152), 1).tolist() == [0]
    assert coreset(torch.randn(50, 7), 1, start_idx=9).tolist() == [9]


def test_projection_is_seeded_and_scaled():
    x = torch.randn(10, 500)
    a, b, c = random_projection(x, 64, 1), random_projection(x, 64, 1), random_projection(x, 64, 2)
    assert a.shape == (10, 64)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Gaussian N(0, 1/P) entries preserve squared norms in expectation
    ratio = (random_projection(torch.randn(2000, 500), 256, 0).pow(2).sum(1) / 500).mean()
    assert abs(float(ratio) - 1.0) < 0.05
    assert torch.equal(random_projection(x, None, 0), x)
    assert torch.equal(random_projection(x, 500, 0), x)  # proj_dim >= D: no projection


def test_seed_changes_selection_only_through_projection():
    feats = clustered(800, 200, seed=4)
    s1 = coreset(feats, 50, proj_dim=32, seed=1)
    s2 = coreset(feats, 50, proj_dim=32, seed=1)
    assert torch.equal(s1, s2)
    assert torch.equal(coreset(feats, 50, proj_dim=None, seed=1), coreset(feats, 50, proj_dim=None, seed=2))


def test_auto_start_is_patchcore_first_pick():
    feats = clustered(600, 40, seed=5)
    z = random_projection(feats, 16, 7)
    start = auto_start_index(z, 7)
    g = torch.Generator().manual_seed(7)
    anchors = torch.randperm(600, generator=g)[:10]
    mean_d = torch.cdist(z.double(), z[anchors].double(), compute_mode="donot_use_mm_for_euclid_dist").mean(1)
    assert start == int(torch.argmax(mean_d))
    sel = coreset(feats, 30, proj_dim=16, start_idx="auto", seed=7)
    assert int(sel[0]) == start
    assert torch.equal(sel, naive_greedy(z, 30, start))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features_are_widened(dtype):
    feats = clustered(400, 64, seed=6).to(dtype)
    sel = coreset(feats, 40, proj_dim=None)
    assert torch.equal(sel, naive_greedy(feats.float(), 40, 0))


def test_covering_radius_shrinks_monotonically():
    feats = clustered(1000, 20, seed=8)
    sel = coreset(feats, 100, proj_dim=None)
    d = torch.cdist(feats.double(), feats[sel].double(), compute_mode="donot_use_mm_for_euclid_dist")
    radii = [float(d[:, : i + 1].min(1).values.max()) for i in range(0, 100, 10)]
    assert all(a >= b for a, b in zip(radii, radii[1:]))


@pytest.mark.slow
def test_patchcore_scale_40000_to_10000():
    feats = torch.randn(40_000, 1152)
    sel = coreset(feats, 10_000, proj_dim=128)
    assert sel.shape == (10_000,) and len(set(sel.tolist())) == 10_000


# --- bad input -------------------------------------------------------------------------------

def test_n_select_out_of_range():
    with pytest.raises(ValueError, match="n_select"):
        coreset(torch.randn(10, 4), 11)
    with pytest.raises(ValueError, match="n_select"):
        coreset(torch.randn(10, 4), 0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rows(bad):
    x = torch.randn(10, 4)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="features"):
        coreset(x, 2)


def test_bad_shapes_and_types():
    with pytest.raises(ValueError, match="features"):
        coreset(torch.randn(10), 2)
    with pytest.raises(ValueError, match="features"):
        coreset(torch.randn(2, 10, 4), 2)
    with pytest.raises(ValueError, match="features"):
        coreset(torch.empty(0, 4), 1)
    with pytest.raises(ValueError, match="features"):
        coreset(torch.ones(10, 4, dtype=torch.int64), 2)


def test_bad_options():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="start_idx"):
        coreset(x, 2, start_idx=10)
    with pytest.raises(ValueError, match="start_idx"):
        coreset(x, 2, start_idx="middle")
    with pytest.raises(ValueError, match="proj_dim"):
        coreset(x, 2, proj_dim=0)
    with pytest.raises(ValueError, match="seed"):
        coreset(x, 2, seed=1.5)


@pytest.mark.cuda
@pytest.mark.parametrize("proj", [None, 64])
def test_cuda_matches_naive_greedy(proj):
    feats = clustered(3000, 1152, seed=9).double()
    sel = coreset(feats.cuda(), 300, proj_dim=proj, start_idx=11, seed=2)
    assert sel.is_cuda
    ref = naive_greedy(random_projection(feats, proj, seed=2), 300, 11)
    assert torch.equal(sel.cpu(), ref)
    assert torch.equal(sel.cpu(), coreset(feats, 300, proj_dim=proj, start_idx=11, seed=2))
