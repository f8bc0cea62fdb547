"""Property-based tests (hypothesis) of every public op against its independent oracle.

Inputs are generated (tests/_clouds.py): 1 point and up, float32 and float64, duplicated,
collinear, coplanar, identical and integer-grid points, 1e-6 and 1e6 scales with and without a
large common offset, non-contiguous views, batched and ragged batches. Each test checks equality
with a naive reference (tests/_oracles.py) or a peer library, plus properties that must hold
whatever the oracle says (unique indices, sorted distances, histogram sums, ...).

Profiles (tests/conftest.py): HYPOTHESIS_PROFILE=ci (default, derandomized, bounded),
sanitize (fewer examples for the ASan+UBSan run), large (1000 examples, fresh randomness).
An op that has not landed on this branch yet is skipped by name, never silently passed.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import group3ad_ext
import _oracles as ref
from _clouds import DTYPES, SCALES, as_layout, clouds, generic_radius, make_cloud


def op(name):
    """The public function group3ad_ext.<name>; skips the test while that op has not landed."""
    fn = getattr(group3ad_ext, name, None)
    if fn is None:
        pytest.skip(f"group3ad_ext.{name} has not landed on this branch")
    return fn


# ---------------------------------------------------------------------------------------- fps
@given(clouds(), st.data())
def test_fps_matches_oracle_unique_and_starts_at_start(cloud, data):
    fps = op("fps")
    pts, _ = cloud
    n = pts.shape[0]
    n_samples = data.draw(st.integers(1, n), label="n_samples")
    start = data.draw(st.integers(0, n - 1), label="start_idx")
    got = fps(pts, n_samples, start_idx=start)
    assert got.dtype == torch.int64 and got.shape == (n_samples,)
    assert int(got[0]) == start
    assert got.unique().numel() == n_samples, "fps repeated an index"
    assert bool(((got >= 0) & (got < n)).all())
    assert torch.equal(got, ref.fps(pts, n_samples, (start,)))


@given(st.integers(1, 200), st.integers(0, 2**20), st.sampled_from(DTYPES), st.data())
def test_fps_is_invariant_to_translation(n, seed, dtype, data):
    # Integer coordinates and an integer shift: every difference and squared distance is exact
    # in float32 and float64, so the picks must not change at all.
    fps = op("fps")
    g = torch.Generator().manual_seed(seed)
    pts = torch.randint(-1000, 1000, (n, 3), generator=g).to(dtype)
    shift = torch.randint(-4000, 4000, (3,), generator=g).to(dtype)
    n_samples = data.draw(st.integers(1, n))
    assert torch.equal(fps(pts, n_samples), fps(pts + shift, n_samples))


@given(st.integers(1, 4), st.integers(1, 120), st.sampled_from(DTYPES), st.integers(0, 2**20), st.data())
def test_fps_ragged_batch_equals_per_cloud(batch, n_max, dtype, seed, data):
    fps = op("fps")
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, n_max + 1, (batch,), generator=g)
    n_samples = data.draw(st.integers(1, int(lengths.min())))
    # Padding rows hold huge values: a kernel that reads past lengths[b] would pick them.
    pts = torch.full((batch, n_max, 3), 1e30 if dtype == torch.float32 else 1e300, dtype=dtype)
    clouds_ = []
    for b in range(batch):
        c = make_cloud(int(lengths[b]), data.draw(st.sampled_from(("uniform", "duplicates", "grid"))), 1.0, seed + b, dtype)
        pts[b, : c.shape[0]] = c
        clouds_.append(c)
    got = fps(pts, n_samples, lengths=lengths)
    assert got.shape == (batch, n_samples)
    for b, c in enumerate(clouds_):
        assert torch.equal(got[b], ref.fps(c, n_samples))


# ---------------------------------------------------------------------------------------- knn
@given(clouds(), st.data())
def test_knn_sorted_matches_oracle_and_peer(cloud, data):
    knn = op("knn")
    pts, desc = cloud
    n = pts.shape[0]
    k = data.draw(st.integers(1, min(n, 20)), label="k")
    m = data.draw(st.integers(1, 40), label="m")
    # Queries: fresh points of the same scale, plus some of the points themselves (exact zeros).
    extra = make_cloud(m, "uniform", desc["scale"], desc["seed"] + 1, pts.dtype)
    query = torch.cat([extra, pts[: min(n, 5)]])
    dist2, idx = knn(query, pts, k)
    want_d, want_i = ref.knn(query, pts, k)
    assert dist2.dtype == pts.dtype and idx.dtype == torch.int64
    assert bool((dist2[:, 1:] >= dist2[:, :-1]).all()), "distances not sorted"
    assert bool((dist2 >= 0).all())
    assert torch.equal(idx, want_i)
    assert torch.equal(dist2, want_d)
    # peer: scipy's KD-tree distances (its own arithmetic, float64) agree to rounding
    from scipy.spatial import cKDTree

    peer_d, _ = cKDTree(pts.double().numpy()).query(query.double().numpy(), k=k)
    peer_d = torch.as_tensor(peer_d).reshape(query.shape[0], k) ** 2
    span = float((pts.double() - pts.double().mean(0)).abs().max() + (query.double().abs().max()))
    tol = (1e-5 if pts.dtype == torch.float32 else 1e-12) * max(span, 1e-300) ** 2 + 1e-300
    assert torch.allclose(dist2.double(), peer_d, rtol=1e-5, atol=tol)


@given(st.integers(1, 4), st.integers(1, 80), st.integers(1, 30), st.sampled_from(DTYPES), st.integers(0, 2**20), st.data())
def test_knn_ragged_batch_equals_per_cloud_and_pads(batch, n_max, m_max, dtype, seed, data):
    knn = op("knn")
    g = torch.Generator().manual_seed(seed)
    p_len = torch.randint(1, n_max + 1, (batch,), generator=g)
    q_len = torch.randint(0, m_max + 1, (batch,), generator=g)
    k = data.draw(st.integers(1, int(p_len.min())))
    pad = 1e30 if dtype == torch.float32 else 1e300
    points = torch.full((batch, n_max, 3), -pad, dtype=dtype)
    query = torch.full((batch, m_max, 3), pad, dtype=dtype)
    for b in range(batch):
        points[b, : p_len[b]] = make_cloud(int(p_len[b]), "duplicates", 1.0, seed + b, dtype)
        query[b, : q_len[b]] = make_cloud(int(q_len[b]), "uniform", 1.0, seed + 100 + b, dtype)
    dist2, idx = knn(query, points, k, query_lengths=q_len, point_lengths=p_len)
    for b in range(batch):
        qb, nb = int(q_len[b]), int(p_len[b])
        wd, wi = ref.knn(query[b, :qb], points[b, :nb], k)
        assert torch.equal(idx[b, :qb], wi) and torch.equal(dist2[b, :qb], wd)
        assert bool((idx[b, qb:] == -1).all()) and bool(torch.isinf(dist2[b, qb:]).all())


@given(clouds(), st.data())
def test_group_centre_first_then_nearest(cloud, data):
    group = op("group")
    pts, _ = cloud
    n = pts.shape[0]
    k = data.draw(st.integers(1, min(n, 16)), label="k")
    m = data.draw(st.integers(1, min(n, 10)), label="m")
    centers = torch.randperm(n, generator=torch.Generator().manual_seed(n))[:m]
    neigh, idx = group(pts, centers, k)
    assert torch.equal(idx[:, 0], centers)
    assert torch.equal(idx, ref.group_idx(pts, centers, k))
    assert torch.equal(neigh, pts.contiguous()[idx] - pts.contiguous()[centers][:, None, :])


# ------------------------------------------------------------------------------------ normals
@given(clouds(kinds=("uniform", "duplicates", "collinear", "coplanar", "identical", "clusters")), st.data())
def test_normals_unit_and_match_pca_oracle(cloud, data):
    normals = op("normals")
    pts, desc = cloud
    n = pts.shape[0]
    max_nn = data.draw(st.integers(3, 40), label="max_nn")
    use_radius = data.draw(st.booleans(), label="use_radius")
    radius = generic_radius(desc["scale"], data.draw(st.sampled_from((0.2, 0.5, 2.0)))) if use_radius else None
    got = normals(pts, radius=radius, max_nn=max_nn)
    assert got.shape == (n, 3) and got.dtype == pts.dtype
    assert bool(torch.isfinite(got).all()), "normals produced NaN/Inf"
    assert torch.allclose(got.double().norm(dim=1), torch.ones(n, dtype=torch.float64), atol=1e-5)
    # Where the smallest eigenvalue is well separated, the normal is determined up to sign.
    tol = 1e-3 if pts.dtype == torch.float32 else 1e-8
    for i in range(0, n, max(1, n // 25)):
        nbrs = ref.hybrid_neighbours(pts, i, radius, max_nn)
        if nbrs.numel() < 3:
            continue
        want, w = ref.pca_normal(pts, nbrs)
        if w[1] - w[0] <= 1e-3 * max(float(w[2]), 1e-300):
            continue
        assert 1 - abs(float(got[i].double() @ want)) < tol, (i, got[i], want)


@given(st.integers(3, 300), st.integers(0, 2**20), st.sampled_from(DTYPES), st.sampled_from(SCALES))
def test_normals_of_a_plane_are_its_normal(n, seed, dtype, scale):
    normals = op("normals")
    from _clouds import plane_points

    p, plane_normal = plane_points(n, torch.Generator().manual_seed(seed))
    pts = (p * scale).to(dtype)
    got = normals(pts, max_nn=30).double()
    # Collinear-in-plane neighbourhoods (possible for tiny n) leave the normal undetermined.
    for i in range(n):
        nbrs = ref.hybrid_neighbours(pts, i, None, 30)
        _, w = ref.pca_normal(pts, nbrs)
        if w[1] > 1e-4 * w[2]:
            assert 1 - abs(float(got[i] @ plane_normal)) < (1e-4 if dtype == torch.float32 else 1e-9)


# --------------------------------------------------------------------------------------- fpfh
def _open3d_fpfh(pts: torch.Tensor, nrm: torch.Tensor, radius: float, max_nn: int) -> torch.Tensor:
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.double().numpy()))
    pc.normals = o3d.utility.Vector3dVector(nrm.double().numpy())
    f = o3d.pipelines.registration.compute_fpfh_feature(pc, o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    return torch.tensor(f.data).t().contiguous()


@given(clouds(high=100, kinds=("uniform", "duplicates", "collinear", "coplanar", "identical", "clusters")), st.data())
def test_fpfh_sub_histograms_sum_to_200(cloud, data):
    fpfh, normals = op("fpfh"), op("normals")
    pts, desc = cloud
    n = pts.shape[0]
    radius = generic_radius(desc["scale"], data.draw(st.sampled_from((0.1, 0.3, 1.0)), label="radius/scale"))
    nrm = normals(pts, max_nn=10)
    got = fpfh(pts, nrm, radius, max_nn=n + 1)  # every point within the radius
    assert got.shape == (n, 33) and got.dtype == pts.dtype
    assert bool(torch.isfinite(got).all()) and bool((got >= 0).all())
    sums = got.double().reshape(n, 3, 11).sum(dim=2)
    d2 = ref.sqdist_matrix(pts.contiguous(), pts.contiguous()).double()
    has_distinct_neighbour = ((d2 < radius**2) & (d2 > 0)).any(dim=1)
    tol = 1e-3 if pts.dtype == torch.float32 else 1e-9
    # A point with a neighbour at positive distance: each block sums to exactly 200
    # (100 from the weighted neighbour SPFHs, 100 from its own SPFH).
    s = sums[has_distinct_neighbour]
    assert torch.allclose(s, torch.full_like(s, 200.0), atol=tol)
    # Every block of a point sums to the same total (0, 100 or 200).
    assert torch.allclose(sums, sums[:, :1].expand(n, 3), atol=tol)


@given(clouds(high=100, kinds=("uniform", "duplicates", "collinear", "coplanar", "identical", "clusters")), st.data())
def test_fpfh_matches_open3d(cloud, data):
    # Random unit normals, not estimated ones: with estimated normals, points sharing one
    # neighbourhood get the *same* normal, and the pair feature's |n1.d| < |n2.d| swap then
    # hinges on rounding noise (it mirrors the phi bin), in Open3D as in any implementation.
    # Independent normals keep every pair away from that tie and from bin edges.
    fpfh = op("fpfh")
    pts, desc = cloud
    n = pts.shape[0]
    radius = generic_radius(desc["scale"], data.draw(st.sampled_from((0.1, 0.3, 1.0)), label="radius/scale"))
    g = torch.Generator().manual_seed(desc["seed"])
    nrm = torch.randn(n, 3, generator=g, dtype=torch.float64)
    nrm = (nrm / nrm.norm(dim=1, keepdim=True)).to(pts.dtype)
    max_nn = n + 1  # every point within the radius: no tie-dependent cut-off
    got = fpfh(pts, nrm, radius, max_nn=max_nn)
    want = _open3d_fpfh(pts, nrm, radius, max_nn)
    tol = 1e-3 if pts.dtype == torch.float32 else 1e-7
    bad = ~torch.isclose(got.double(), want, atol=tol, rtol=1e-6).all(dim=1)
    assert not bool(bad.any()), f"rows {bad.nonzero().squeeze(1).tolist()[:10]} differ from Open3D"


@given(clouds(high=120), st.data())
def test_fpfh_variation_matches_oracle(cloud, data):
    fpfh_variation = op("fpfh_variation")
    pts, desc = cloud
    n = pts.shape[0]
    k = data.draw(st.integers(1, 20), label="k")
    f_dim = data.draw(st.integers(1, 33), label="F")
    feats = make_cloud(n, "uniform", 100.0, desc["seed"] + 7, pts.dtype, dim=f_dim)
    got = fpfh_variation(pts, feats, k)
    assert got.shape == (n,) and bool((got >= 0).all())
    want = ref.fpfh_variation(pts, feats, k)
    rtol = 1e-6 if feats.dtype == torch.float32 else 1e-12
    assert torch.allclose(got.double(), want, rtol=rtol, atol=1e-30)
    if n == 1:
        assert float(got[0]) == 0.0


@given(clouds(high=120, kinds=("uniform", "duplicates", "coplanar", "identical", "grid", "clusters")), st.data())
def test_fpfh_with_variation_equals_the_two_ops(cloud, data):
    fpfh_with_variation = op("fpfh_with_variation")
    pts, desc = cloud
    radius = generic_radius(desc["scale"], data.draw(st.sampled_from((0.1, 0.3, 1.0)), label="radius/scale"))
    max_nn = data.draw(st.integers(1, 40), label="max_nn")
    k = data.draw(st.integers(1, 20), label="k")
    nrm = op("normals")(pts, max_nn=10)
    f, v = fpfh_with_variation(pts, nrm, radius, max_nn, k)
    want_f = op("fpfh")(pts, nrm, radius, max_nn)
    assert torch.equal(f, want_f)
    assert torch.equal(v, op("fpfh_variation")(pts, want_f, k))


# --------------------------------------------------------------------------------------- agcs
@given(clouds(low=2, high=250, kinds=("uniform", "duplicates", "coplanar", "clusters", "grid"), layouts=("contiguous", "transposed")),
       st.data())
def test_agcs_returns_exactly_n_unique_indices(cloud, data):
    agcs = op("agcs")
    pts, _ = cloud
    n = pts.shape[0]
    distinct = torch.unique(pts.contiguous(), dim=0).shape[0]
    n_centers = data.draw(st.integers(1, distinct), label="n_centers")
    alpha = data.draw(st.sampled_from((0.0, 0.2, 0.5, 1.0)), label="alpha")
    got = agcs(pts, n_centers, alpha=alpha)
    assert got.dtype == torch.int64 and got.shape == (n_centers,)
    assert got.unique().numel() == n_centers, "agcs repeated a centre"
    assert bool(((got >= 0) & (got < n)).all())
    if alpha == 0.0:
        assert torch.equal(got, ref.fps(pts, n_centers))


# ---------------------------------------------------------------------------------- nn_search
_NN_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@given(st.integers(0, 40), st.integers(1, 60), st.integers(1, 40), st.sampled_from(_NN_DTYPES),
       st.sampled_from(("normal", "duplicates", "offset", "tiny", "huge")), st.integers(0, 2**20), st.data())
def test_nn_search_non_negative_sorted_and_exact(q, b, d, dtype, kind, seed, data):
    nn_search = op("nn_search")
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(b, d, generator=g, dtype=torch.float64)
    queries = torch.randn(q, d, generator=g, dtype=torch.float64)
    if kind == "duplicates":
        bank = bank[torch.randint(0, max(1, b // 3), (b,), generator=g)]
        queries = torch.cat([queries, bank[: min(b, 5)]])
    elif kind == "offset":  # features far from the origin: cancellation in |q|^2 + |b|^2 - 2 q.b
        bank, queries = bank + 1e4, queries + 1e4
    elif kind == "tiny":
        bank, queries = bank * 1e-3, queries * 1e-3
    elif kind == "huge":
        bank, queries = bank * 1e3, queries * 1e3
    bank, queries = bank.to(dtype), queries.to(dtype)
    k = data.draw(st.integers(1, b), label="k")
    if data.draw(st.booleans(), label="non_contiguous"):
        queries, bank = as_layout(queries, "transposed"), as_layout(bank, "row_strided")
    dist, idx = nn_search(queries, bank, k)
    assert dist.dtype == torch.float32 and dist.shape == (queries.shape[0], k)
    assert bool((dist >= 0).all()), "nn_search returned a negative distance"
    assert bool((dist[:, 1:] >= dist[:, :-1]).all())
    full = ref.nn_search(queries, bank)
    want_d, want_i = torch.sort(full, dim=1, stable=True)
    want_d, want_i = want_d[:, :k], want_i[:, :k]
    # The exact float64 distances of the returned rows are the k smallest (a tie in float64 at
    # the 1e-15 level may swap two rows), and dist is that distance rounded to float32.
    got_exact = torch.gather(full, 1, idx)
    assert torch.allclose(got_exact, want_d, rtol=1e-13, atol=0)
    assert torch.allclose(dist.double(), got_exact, rtol=2.0**-23, atol=0)
    near_tie = torch.zeros_like(want_d, dtype=torch.bool)
    if k < full.shape[1]:
        nxt = torch.sort(full, dim=1).values[:, 1 : k + 1]
        near_tie = (nxt - want_d).abs() <= 1e-13 * want_d.abs()
    prev_tie = torch.zeros_like(near_tie)
    prev_tie[:, 1:] = (want_d[:, 1:] - want_d[:, :-1]).abs() <= 1e-13 * want_d[:, 1:].abs()
    clear = ~(near_tie | prev_tie)
    assert torch.equal(idx[clear], want_i[clear])


# ------------------------------------------------------------------------------ coreset / fps_features
@given(st.integers(1, 150), st.integers(1, 40), st.sampled_from(DTYPES), st.sampled_from(("uniform", "duplicates", "identical")),
       st.integers(0, 2**20), st.data())
def test_fps_features_is_greedy_k_center(n, d, dtype, kind, seed, data):
    fps_features = op("fps_features")
    feats = as_layout(make_cloud(n, kind, 1.0, seed, dtype, dim=d), data.draw(st.sampled_from(("contiguous", "transposed"))))
    m = data.draw(st.integers(1, n), label="n_samples")
    start = data.draw(st.integers(0, n - 1), label="start_idx")
    got = fps_features(feats, m, start_idx=start)
    assert got.shape == (m,) and got.unique().numel() == m
    assert torch.equal(got, ref.fps_features(feats, m, start))


@given(st.integers(1, 150), st.integers(1, 40), st.sampled_from((torch.float32, torch.float64, torch.float16, torch.bfloat16)),
       st.sampled_from(("uniform", "duplicates", "identical")), st.sampled_from((None, 4, 128)), st.integers(0, 2**20), st.data())
def test_coreset_is_greedy_k_center_on_the_projection(n, d, dtype, kind, proj_dim, seed, data):
    coreset = op("coreset")
    from group3ad_ext.coreset import random_projection

    feats = make_cloud(n, kind, 1.0, seed, torch.float64, dim=d).to(dtype)
    m = data.draw(st.integers(1, n), label="n_select")
    start = data.draw(st.integers(0, n - 1), label="start_idx")
    got = coreset(feats, m, proj_dim=proj_dim, start_idx=start, seed=seed)
    assert got.dtype == torch.int64 and got.shape == (m,)
    assert got.unique().numel() == m and int(got[0]) == start
    z = random_projection(feats, proj_dim, seed=seed)
    assert torch.equal(got, ref.fps_features(z, m, start))
