"""knn and group: exact against a naive full-matrix reference, scipy cKDTree and pykdtree."""

import numpy as np
import pytest
import torch

import group3ad_ext
from group3ad_ext import group, knn

cuda = pytest.mark.cuda


# ---------------------------------------------------------------------------------------------
# Oracles


def ref_knn(q: torch.Tensor, p: torch.Tensor, k: int):
    """Naive reference: full (M,N) matrix of ((dx*dx + dy*dy) + dz*dz), stable sort (ties keep
    the lower index first), first k columns."""
    dx = q[:, None, 0] - p[None, :, 0]
    dy = q[:, None, 1] - p[None, :, 1]
    dz = q[:, None, 2] - p[None, :, 2]
    d = dx * dx + dy * dy + dz * dz
    d, i = torch.sort(d, dim=1, stable=True)
    return d[:, :k], i[:, :k]


def assert_matches_ref(q, p, k):
    d, i = knn(q, p, k)
    rd, ri = ref_knn(q, p, k)
    assert d.dtype == p.dtype and i.dtype == torch.int64
    assert d.shape == (q.shape[0], k) and i.shape == (q.shape[0], k)
    assert torch.equal(d, rd), (d - rd).abs().max()
    assert torch.equal(i, ri)


def surface(n, seed=0, dtype=torch.float32):
    from benchmarks.common import surface_cloud

    return surface_cloud(n, seed=seed, dtype=dtype)


def untied_rows(d: np.ndarray, rel=1e-9):
    """Rows whose k distances (and the gap to the next) are all distinct: indices are unique."""
    gaps = np.diff(d, axis=1)
    return (gaps > rel * np.maximum(d[:, 1:], 1e-30)).all(axis=1)


# ---------------------------------------------------------------------------------------------
# Exactness against the naive reference


@pytest.mark.parametrize("k", [1, 7, 64])
def test_random_cloud_matches_reference(k):
    p = torch.rand(3000, 3)
    q = torch.rand(700, 3) * 1.2 - 0.1  # some queries outside the cloud's box
    assert_matches_ref(q, p, k)


def test_surface_cloud_self_query_matches_reference():
    p = surface(20000)
    q = p[torch.randperm(p.shape[0])[:500]]
    assert_matches_ref(q, p, 32)
    # querying the indexed points themselves takes the tree-order path
    d, i = knn(p, p, 4)
    sel = torch.randperm(p.shape[0])[:400]
    rd, ri = ref_knn(p[sel], p, 4)
    assert torch.equal(d[sel], rd) and torch.equal(i[sel], ri)
    assert (d[:, 0] == 0).all()


def test_float64_matches_reference():
    p = torch.randn(2500, 3, dtype=torch.float64) * 1e3 + 1e6  # large offset: rounding matters
    q = p[:300] + torch.randn(300, 3, dtype=torch.float64)
    assert_matches_ref(q, p, 20)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_clouds_k_equals_n(n):
    p = torch.rand(n, 3)
    q = torch.rand(5, 3)
    for k in range(1, n + 1):
        assert_matches_ref(q, p, k)


def test_k_equals_n_and_k_one():
    p = torch.randn(600, 3)
    q = torch.randn(50, 3)
    assert_matches_ref(q, p, 600)
    assert_matches_ref(q, p, 1)


def test_duplicates_ties_go_to_lower_index():
    base = torch.rand(40, 3)
    p = torch.cat([base, base, base[:10]])[torch.randperm(90)]
    q = torch.cat([base[:20], torch.rand(20, 3)])
    assert_matches_ref(q, p, 9)
    d, i = knn(p, p, 3)
    rd, ri = ref_knn(p, p, 3)
    assert torch.equal(i, ri) and torch.equal(d, rd)


def test_all_identical_points():
    p = torch.full((1000, 3), 2.5)
    q = torch.tensor([[2.5, 2.5, 2.5], [0.0, 0.0, 0.0]])
    d, i = knn(q, p, 50)
    assert torch.equal(i, torch.arange(50).expand(2, 50))
    assert (d[0] == 0).all()
    assert_matches_ref(q, p, 1000)


def test_collinear_equally_spaced_ties():
    t = torch.arange(500, dtype=torch.float32)[torch.randperm(500)]
    p = torch.stack([t, 2 * t, torch.zeros_like(t)], dim=1)
    q = p[:100].clone()
    q[50:, 0] += 0.5  # half-way between two points: exact ties
    q[50:, 1] += 1.0
    assert_matches_ref(q, p, 7)


def test_integer_grid_many_equal_distances():
    g = torch.arange(12, dtype=torch.float64)
    p = torch.cartesian_prod(g, g, g)[torch.randperm(12**3)]
    q = torch.cartesian_prod(g[::3], g[::3], g[::3]) + 0.5
    assert_matches_ref(q, p, 27)


def test_non_contiguous_inputs():
    big = torch.rand(3, 2000, 4, dtype=torch.float64)
    p = big[1, :, 1:]  # strided rows
    q = big[2, ::5, :3]
    assert not p.is_contiguous() and not q.is_contiguous()
    assert_matches_ref(q, p, 10)
    pt = torch.rand(3, 1500).t()
    assert_matches_ref(pt[:100], pt, 5)


def test_batched_ragged_lengths():
    B, M, N, k = 4, 300, 900, 12
    p = torch.rand(B, N, 3)
    q = torch.rand(B, M, 3)
    pl = torch.tensor([900, 13, 500, 12])
    ql = torch.tensor([300, 0, 17, 299])
    d, i = knn(q, p, k, query_lengths=ql, point_lengths=pl)
    assert d.shape == (B, M, k) and i.shape == (B, M, k)
    for b in range(B):
        nq, npts = int(ql[b]), int(pl[b])
        rd, ri = ref_knn(q[b, :nq], p[b, :npts], k)
        assert torch.equal(d[b, :nq], rd) and torch.equal(i[b, :nq], ri)
        assert torch.isinf(d[b, nq:]).all() and (i[b, nq:] == -1).all()


def test_batched_without_lengths_equals_per_cloud():
    p = torch.rand(3, 400, 3)
    q = torch.rand(3, 50, 3)
    d, i = knn(q, p, 6)
    for b in range(3):
        rd, ri = ref_knn(q[b], p[b], 6)
        assert torch.equal(d[b], rd) and torch.equal(i[b], ri)


# ---------------------------------------------------------------------------------------------
# Against the peers (scipy cKDTree, pykdtree) on larger clouds


def test_surface_cloud_matches_scipy_ckdtree_100k():
    from scipy.spatial import cKDTree

    p = surface(100_000, dtype=torch.float64)
    q = p[torch.randperm(p.shape[0])[:4096]]
    d, i = knn(q, p, 128)
    sd, si = cKDTree(p.numpy()).query(q.numpy(), 128, workers=-1)
    np.testing.assert_allclose(d.sqrt().numpy(), sd, rtol=1e-12, atol=1e-12)
    rows = untied_rows(sd)
    assert rows.mean() > 0.9
    assert np.array_equal(i.numpy()[rows], si[rows])


@pytest.mark.slow
def test_all_points_match_pykdtree_200k():
    from pykdtree.kdtree import KDTree

    p = surface(200_000, seed=3, dtype=torch.float64)
    d, i = knn(p, p, 16)
    pd, pi = KDTree(p.numpy()).query(p.numpy(), k=16)
    np.testing.assert_allclose(d.sqrt().numpy(), pd, rtol=1e-9, atol=1e-12)
    rows = untied_rows(pd)
    assert rows.mean() > 0.9
    assert np.array_equal(i.numpy()[rows], pi[rows].astype(np.int64))


def test_random_cloud_matches_pykdtree_float32_distances():
    from pykdtree.kdtree import KDTree

    p = torch.rand(100_000, 3)
    q = torch.rand(1000, 3)
    d, i = knn(q, p, 10)
    pd, _ = KDTree(p.numpy().astype(np.float64)).query(q.numpy().astype(np.float64), k=10)
    np.testing.assert_allclose(d.double().sqrt().numpy(), pd, rtol=1e-5, atol=1e-6)
    # every returned index really is at the returned distance
    rd = ((p[i] - q[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(rd, d, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# group()


def test_group_shapes_centre_first_and_relative_coordinates():
    p = surface(5000)
    c = torch.randperm(5000)[:64]
    nb, idx = group(p, c, 32)
    assert nb.shape == (64, 32, 3) and idx.shape == (64, 32) and idx.dtype == torch.int64
    assert torch.equal(idx[:, 0], c)
    assert (nb[:, 0] == 0).all()
    torch.testing.assert_close(nb, p[idx] - p[c][:, None], rtol=0, atol=0)
    _, ri = ref_knn(p[c], p, 32)
    assert torch.equal(idx, ri)  # no duplicates here: plain kNN order


def test_group_batched():
    p = torch.rand(2, 700, 3, dtype=torch.float64)
    c = torch.stack([torch.randperm(700)[:10], torch.randperm(700)[:10]])
    nb, idx = group(p, c, 16)
    assert nb.shape == (2, 10, 16, 3) and idx.shape == (2, 10, 16)
    for b in range(2):
        assert torch.equal(idx[b, :, 0], c[b])
        assert torch.equal(nb[b], p[b][idx[b]] - p[b][c[b]][:, None])
        _, ri = ref_knn(p[b][c[b]], p[b], 16)
        assert torch.equal(idx[b], ri)


def test_group_centre_first_among_duplicates():
    p = torch.cat([torch.zeros(10, 3), torch.ones(5, 3)])
    nb, idx = group(p, torch.tensor([7, 12, 0]), 4)
    assert idx.tolist() == [[7, 0, 1, 2], [12, 10, 11, 13], [0, 1, 2, 3]]
    assert (nb == 0).all()
    nb, idx = group(p, torch.tensor([3]), 12)
    assert idx[0].tolist() == [3, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]


def test_group_k_one_and_k_n():
    p = torch.rand(9, 3)
    nb, idx = group(p, torch.tensor([4, 8]), 1)
    assert idx.tolist() == [[4], [8]] and (nb == 0).all()
    _, idx = group(p, torch.tensor([4]), 9)
    assert sorted(idx[0].tolist()) == list(range(9)) and idx[0, 0] == 4


# ---------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument, before any kernel runs


def _bad_knn_cases():
    p = torch.rand(20, 3)
    q = torch.rand(5, 3)
    nan = p.clone()
    nan[3, 1] = float("nan")
    inf = q.clone()
    inf[0, 0] = float("inf")
    pb, qb = p[None].expand(2, -1, -1), q[None].expand(2, -1, -1)
    return [
        ("points", dict(query=q, points=nan, k=3)),
        ("query", dict(query=inf, points=p, k=3)),
        ("points", dict(query=q, points=p[:, :2], k=3)),
        ("points", dict(query=q, points=p.reshape(-1), k=3)),
        ("query", dict(query=q.reshape(1, 1, 5, 3), points=p, k=3)),
        ("points", dict(query=q, points=(p * 10).int(), k=3)),
        ("query", dict(query=q.double(), points=p, k=3)),
        ("points", dict(query=q, points=p[:0], k=1)),
        ("query", dict(query=q[:0], points=p, k=1)),
        ("query", dict(query=q, points=pb, k=3)),
        ("k", dict(query=q, points=p, k=0)),
        ("k", dict(query=q, points=p, k=21)),
        ("k", dict(query=q, points=p, k=2.0)),
        ("query_lengths", dict(query=q, points=p, k=3, query_lengths=torch.tensor([5]))),
        ("query_lengths", dict(query=qb, points=pb, k=3, query_lengths=torch.tensor([5, 6]))),
        ("query_lengths", dict(query=qb, points=pb, k=3, query_lengths=torch.tensor([5, -1]))),
        ("query_lengths", dict(query=qb, points=pb, k=3, query_lengths=torch.tensor([5.0, 1.0]))),
        ("point_lengths", dict(query=qb, points=pb, k=3, point_lengths=torch.tensor([0, 20]))),
        ("point_lengths", dict(query=qb, points=pb, k=3, point_lengths=torch.tensor([21, 20]))),
        ("point_lengths", dict(query=qb, points=pb, k=3, point_lengths=torch.tensor([20]))),
        ("k", dict(query=qb, points=pb, k=3, point_lengths=torch.tensor([2, 20]))),
        ("points", dict(query=q, points=p.numpy(), k=3)),
    ]


@pytest.mark.parametrize("name,kwargs", _bad_knn_cases())
def test_knn_bad_input_raises_value_error(name, kwargs):
    with pytest.raises(ValueError, match=name):
        knn(**kwargs)


def test_knn_query_and_points_on_different_devices():
    p = torch.rand(20, 3, device="meta")
    with pytest.raises(ValueError, match="query"):
        knn(torch.rand(5, 3), p, 3)


@pytest.mark.parametrize("name,args", [
    ("points", (torch.rand(10, 2), torch.tensor([0]), 2)),
    ("points", (torch.full((10, 3), float("nan")), torch.tensor([0]), 2)),
    ("points", (torch.zeros(0, 3), torch.tensor([0]), 1)),
    ("center_idx", (torch.rand(10, 3), torch.tensor([0.0]), 2)),
    ("center_idx", (torch.rand(10, 3), torch.tensor([10]), 2)),
    ("center_idx", (torch.rand(10, 3), torch.tensor([-1]), 2)),
    ("center_idx", (torch.rand(10, 3), torch.tensor([[0]]), 2)),
    ("center_idx", (torch.rand(10, 3), torch.tensor([], dtype=torch.int64), 2)),
    ("center_idx", (torch.rand(10, 3), [0, 1], 2)),
    ("center_idx", (torch.rand(2, 10, 3), torch.tensor([[0]]), 2)),
    ("k", (torch.rand(10, 3), torch.tensor([0]), 11)),
    ("k", (torch.rand(10, 3), torch.tensor([0]), 0)),
])
def test_group_bad_input_raises_value_error(name, args):
    with pytest.raises(ValueError, match=name):
        group(*args)


# ---------------------------------------------------------------------------------------------
# torch.library integration


def test_opcheck_knn():
    p = torch.rand(2, 40, 3)
    q = torch.rand(2, 11, 3)
    args = (q, p, torch.tensor([11, 4]), torch.tensor([40, 25]), 5)
    torch.library.opcheck(torch.ops.group3ad_ext.knn.default, args)
    torch.library.opcheck(torch.ops.group3ad_ext.knn.default,
                          (q.double(), p.double(), torch.tensor([11, 11]), torch.tensor([40, 40]), 40))


def _extreme_extent_clouds():
    """float64 clouds whose extent underflows or overflows a grid's arithmetic (finite inputs)."""
    g = torch.Generator().manual_seed(5)
    tiny = torch.rand(500, 3, generator=g, dtype=torch.float64) * 1e-200  # volume underflows
    subnormal = torch.tensor([[0.0, 0, 0], [5e-324, 0, 0], [0, 1e-323, 0], [2e-323, 0, 5e-324]],
                             dtype=torch.float64)
    huge = (torch.rand(400, 3, generator=g, dtype=torch.float64) * 2 - 1) * 9e307  # extent overflows
    return {"tiny": tiny, "subnormal": subnormal, "huge": huge}


def _underflowing_float32():
    """float32 points ~1e-30 apart: their squared distances underflow to 0 (all tie)."""
    g = torch.Generator().manual_seed(6)
    return torch.rand(64, 3, generator=g) * 1e-30


def test_underflowing_float32_distances_tie_to_the_lowest_index():
    p = _underflowing_float32()
    assert_matches_ref(p, p, 1)
    assert_matches_ref(p[7:8], p, 5)


@pytest.mark.parametrize("name", ["tiny", "subnormal", "huge"])
def test_extreme_extents_match_reference(name):
    p = _extreme_extent_clouds()[name]
    assert_matches_ref(p, p, min(8, p.shape[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flying_pixels_match_reference(dtype):
    # 20 stray points at 50-1000x the scan's extent: the index lays its Morton cells on a robust
    # box (common/robust_box.h) and clamps them into boundary cells; the search must stay exact
    # for queries on the scan, at the outliers and beyond them.
    from benchmarks.bench_knn import with_flying_pixels

    p = with_flying_pixels(surface(6000, seed=8, dtype=torch.float64)).to(dtype)
    far = p[-20:]
    q = torch.cat([p[:-20:10], far, far * 2, far * -0.5])
    for k in (1, 16, 64):
        assert_matches_ref(q, p, k)


def test_exported_from_package():
    assert group3ad_ext.knn is knn and group3ad_ext.group is group
    assert "knn" in group3ad_ext.__all__ and "group" in group3ad_ext.__all__


# ---------------------------------------------------------------------------------------------
# CUDA equals CPU, bit for bit


def _cuda_equals_cpu(q, p, k, **lengths):
    d, i = knn(q, p, k, **lengths)
    cl = {n: v.cuda() for n, v in lengths.items()}
    dc, ic = knn(q.cuda(), p.cuda(), k, **cl)
    assert torch.equal(ic.cpu(), i)
    assert torch.equal(dc.cpu(), d)


@cuda
@pytest.mark.slow
def test_cuda_equals_cpu_all_points_k32_1m():
    p = surface(1_000_000)
    _cuda_equals_cpu(p, p, 32)


@cuda
@pytest.mark.slow
def test_cuda_equals_cpu_grouping_shape_k128():
    p = surface(1_000_000, seed=1)
    q = p[torch.randperm(p.shape[0])[:4096]]
    _cuda_equals_cpu(q, p, 128)


@cuda
def test_cuda_equals_cpu_batched_ragged():
    p = torch.rand(3, 5000, 3)
    q = torch.rand(3, 700, 3)
    _cuda_equals_cpu(q, p, 16, query_lengths=torch.tensor([700, 0, 31]),
                     point_lengths=torch.tensor([5000, 16, 2000]))


@cuda
def test_cuda_equals_cpu_float64_and_random():
    p = torch.randn(50_000, 3, dtype=torch.float64) * 10
    _cuda_equals_cpu(p[:3000] + 0.1, p, 24)
    p = torch.rand(20_000, 3)
    _cuda_equals_cpu(torch.rand(2000, 3) * 3 - 1, p, 8)  # queries far outside the grid


@cuda
def test_cuda_equals_cpu_duplicates_and_identical():
    base = torch.rand(300, 3)
    p = torch.cat([base] * 4)[torch.randperm(1200)]
    _cuda_equals_cpu(p, p, 10)
    same = torch.full((3000, 3), 1.0)
    _cuda_equals_cpu(torch.rand(50, 3), same, 200)
    g = torch.arange(20, dtype=torch.float32)
    grid = torch.cartesian_prod(g, g, g)
    _cuda_equals_cpu(grid[::7] + 0.5, grid, 64)


@cuda
@pytest.mark.parametrize("name", ["tiny", "subnormal", "huge"])
def test_cuda_equals_cpu_extreme_extents(name):
    # The grid's cell size came out 0 (tiny) or NaN (huge) and its sizing loop never ended.
    p = _extreme_extent_clouds()[name]
    _cuda_equals_cpu(p, p, min(8, p.shape[0]))


@cuda
def test_cuda_equals_cpu_underflowing_float32():
    # The grid skipped a cell whose bound was a hair above 0 while its points computed 0 and
    # tied with a lower index (query = point 7 returned 7, not 0): bounds now keep a slack.
    p = _underflowing_float32()
    _cuda_equals_cpu(p, p, 1)
    _cuda_equals_cpu(p[7:8], p, 5)


@cuda
def test_cuda_equals_cpu_grouping_shape_100k():
    p = surface(100_000, seed=1)
    q = p[torch.randperm(p.shape[0], generator=torch.Generator().manual_seed(0))[:4096]]
    _cuda_equals_cpu(q, p, 128)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu_with_flying_pixels(dtype):
    # 20 stray points at 50-1000x the scan's extent on every side: the CUDA grid's box comes from
    # robust extents, the outliers and far queries land in open boundary cells; still exact.
    from benchmarks.bench_knn import with_flying_pixels

    p = with_flying_pixels(surface(100_000, seed=3, dtype=torch.float64), seed=3).to(dtype)
    out = p[-20:]
    q = torch.cat([p[::50], out, out * 2])
    for k in (16, 64):
        _cuda_equals_cpu(q, p, k)


@cuda
@pytest.mark.parametrize("n", [1, 2, 3, 100, 1500])
def test_cuda_equals_cpu_k_equals_n(n):
    p = torch.rand(n, 3)
    _cuda_equals_cpu(torch.rand(37, 3), p, n)


@cuda
def test_cuda_large_k_matches_reference():
    p = surface(30_000, seed=2)
    q = p[:500]
    d, i = knn(q.cuda(), p.cuda(), 3000)
    rd, ri = ref_knn(q, p, 3000)
    assert torch.equal(d.cpu(), rd) and torch.equal(i.cpu(), ri)


@cuda
def test_cuda_group_equals_cpu():
    p = surface(100_000)
    c = torch.randperm(100_000)[:512]
    nb, idx = group(p, c, 64)
    nbc, idxc = group(p.cuda(), c.cuda(), 64)
    assert torch.equal(idxc.cpu(), idx) and torch.equal(nbc.cpu(), nb)


@cuda
def test_cuda_scratch_memory_is_counted_by_torch():
    # The grid's scratch (cell keys, sorted points, index maps: > 36 bytes a point) comes from
    # torch's caching allocator, so torch.cuda.max_memory_allocated sees it (benchmarks report it).
    p = torch.rand(200_000, 3, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    d, i = knn(p[:1000], p, 8)
    torch.cuda.synchronize()
    outputs = d.numel() * d.element_size() + i.numel() * i.element_size()
    assert torch.cuda.max_memory_allocated() - base >= outputs + 36 * p.shape[0]
    assert torch.cuda.memory_allocated() - base <= outputs + (1 << 20)  # scratch returned
