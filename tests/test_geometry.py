"""normals, fpfh, fpfh_variation, agcs: vs Open3D, vs naive references, invariants, bad input."""

import math

import numpy as np
import pytest
import torch

import group3ad_ext as g
from benchmarks.common import surface_cloud


class _Open3D:
    """open3d, imported on first use: the CUDA tests here need no Open3D and must also run on
    GPU machines that lack it (tests that do use it skip there)."""

    def __getattr__(self, name):
        return getattr(pytest.importorskip("open3d"), name)


o3d = _Open3D()

ops = torch.ops.group3ad_ext


# ------------------------------------------------------------------------------------------
# Clouds (random, not gridded: exactly equal distances would make neighbour order a tie-break
# question between two KD-trees instead of a test of the math).
def sphere(n, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return torch.from_numpy(v / np.linalg.norm(v, axis=1, keepdims=True))


def plane(n, seed=0):
    g_ = np.random.default_rng(seed)
    uv = g_.uniform(-1, 1, size=(n, 2))
    a, b = np.array([1.0, 0.2, 0.3]), np.array([-0.1, 1.0, 0.4])
    return torch.from_numpy(uv[:, :1] * a + uv[:, 1:] * b + np.array([3.0, -2.0, 5.0]))


def box(n, seed=0):
    g_ = np.random.default_rng(seed)
    p = g_.uniform(-1, 1, size=(n, 3)) * np.array([1.0, 0.7, 0.4])
    face = g_.integers(0, 6, size=n)
    ext = np.array([1.0, 0.7, 0.4])
    for ax in range(3):
        p[face == 2 * ax, ax] = ext[ax]
        p[face == 2 * ax + 1, ax] = -ext[ax]
    return torch.from_numpy(p)


def o3d_cloud(p, normals=None):
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p.double().numpy()))
    if normals is not None:
        pc.normals = o3d.utility.Vector3dVector(normals.double().numpy())
    return pc


def o3d_normals(p, radius, max_nn):
    pc = o3d_cloud(p)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    return torch.from_numpy(np.asarray(pc.normals).copy())


def o3d_fpfh_legacy(p, n, radius, max_nn):
    f = o3d.pipelines.registration.compute_fpfh_feature(
        o3d_cloud(p, n), o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    return torch.from_numpy(np.asarray(f.data).T.copy())


def o3d_fpfh_tensor(p, n, radius, max_nn):
    tp = o3d.t.geometry.PointCloud(o3d.core.Tensor(p.double().numpy()))
    tp.point.normals = o3d.core.Tensor(n.double().numpy())
    f = o3d.t.pipelines.registration.compute_fpfh_feature(tp, max_nn=max_nn, radius=radius)
    return torch.from_numpy(f.numpy().copy())


# ------------------------------------------------------------------------------------------
# Naive references written from the definition (kernels.md), independent of the C++ code.
def naive_hybrid(P, i, radius, k):
    d2 = ((P - P[i]) ** 2).sum(1)
    order = np.lexsort((np.arange(len(P)), d2))[:k]
    return [j for j in order if d2[j] < radius * radius], d2


def dot(a, b):
    # (a0 b0 + a1 b1) + a2 b2 in Python floats, no FMA: nearly parallel neighbour normals make
    # |a1| == |a2| up to the last bit, and the frame choice then depends on that rounding.
    return float(a[0]) * float(b[0]) + float(a[1]) * float(b[1]) + float(a[2]) * float(b[2])


def naive_pair(p1, n1, p2, n2):
    d = p2 - p1
    length = math.sqrt(dot(d, d))
    if length == 0:
        return 0.0, 0.0, 0.0
    a1, a2 = dot(n1, d) / length, dot(n2, d) / length
    if math.acos(abs(a1)) > math.acos(abs(a2)):
        n1, n2, d, phi = n2, n1, -d, -a2
    else:
        phi = a1
    v = np.cross(d, n1)
    vn = math.sqrt(dot(v, v))
    if vn == 0:
        return 0.0, 0.0, 0.0
    v = v / vn
    w = np.cross(n1, v)
    return math.atan2(dot(w, n2), dot(n1, n2)), dot(v, n2), phi


def naive_fpfh(P, N, radius, k):
    P, N = P.double().numpy(), N.double().numpy()
    n = len(P)
    clamp = lambda x: min(max(int(math.floor(x)), 0), 10)  # noqa: E731
    nbs = [naive_hybrid(P, i, radius, k) for i in range(n)]
    spfh = np.zeros((n, 33))
    for i, (nb, _) in enumerate(nbs):
        for j in nb[1:]:
            f = naive_pair(P[i], N[i], P[j], N[j])
            for b in (clamp(11 * (f[0] + math.pi) / (2 * math.pi)), 11 + clamp(11 * (f[1] + 1) * 0.5),
                      22 + clamp(11 * (f[2] + 1) * 0.5)):
                spfh[i, b] += 100.0 / (len(nb) - 1)
    out = np.zeros((n, 33))
    for i, (nb, d2) in enumerate(nbs):
        if len(nb) <= 1:
            continue
        s = np.zeros(3)
        for j in nb[1:]:
            if d2[j] == 0:
                continue
            out[i] += spfh[j] / d2[j]
            s += (spfh[j] / d2[j]).reshape(3, 11).sum(1)
        scale = np.where(s != 0, 100.0 / np.where(s != 0, s, 1), 0.0)
        out[i] = out[i] * np.repeat(scale, 11) + spfh[i]
    return torch.from_numpy(out)


def naive_variation(P, F, k):
    d2 = torch.cdist(P.double(), P.double()) ** 2
    n = len(P)
    d2.fill_diagonal_(float("inf"))
    kk = min(k, n - 1)
    # k nearest others, ties to the lower index (stable sort)
    idx = torch.sort(d2, dim=1, stable=True).indices[:, :kk]
    return (F.double()[:, None, :] - F.double()[idx]).norm(dim=2).sum(1)


# ------------------------------------------------------------------------------------------
# normals
@pytest.mark.parametrize("name,cloud,radius", [("sphere", sphere(3000), 0.15),
                                               ("plane", plane(3000), 0.12),
                                               ("box", box(4000), 0.15)])
def test_normals_match_open3d(name, cloud, radius):
    ours = g.normals(cloud, radius, 30)
    ref = o3d_normals(cloud, radius, 30)
    dot = (ours * ref).sum(1).abs()
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(cloud), dtype=ours.dtype))
    # Same algorithm on the same neighbourhoods: agreement everywhere, not only where well
    # conditioned (box edges included).
    assert (dot > 0.999).all(), f"{name}: min |dot| {dot.min()}"


def test_normals_surface_cloud_and_float32():
    p = surface_cloud(20000, dtype=torch.float64)
    ref = o3d_normals(p, 0.6, 30)
    for pts in (p, p.float()):
        ours = g.normals(pts, 0.6, 30)
        assert ours.dtype == pts.dtype
        dot = (ours.double() * ref).sum(1).abs()
        assert (dot > 0.999).mean(dtype=float) > 0.999 if isinstance(dot, np.ndarray) else \
            (dot > 0.999).double().mean() > 0.999


def test_normals_knn_mode_and_sphere_truth():
    p = sphere(2000)
    n = g.normals(p, None, 20)
    assert ((n * p).sum(1).abs() > 0.99).all()  # radial on a sphere
    pc = o3d_cloud(p)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(20))
    ref = torch.from_numpy(np.asarray(pc.normals).copy())
    assert ((n * ref).sum(1).abs() > 0.999).all()


def test_normals_orientation():
    p = sphere(500)
    out = g.normals(p, 0.3, 30, orient_to=torch.zeros(3, dtype=torch.float64))
    assert ((out * (0 - p)).sum(1) >= 0).all()  # toward the centre
    up = g.normals(p, 0.3, 30, orient_to=("direction", (0.0, 0.0, 1.0)))
    assert (up[:, 2] >= 0).all()
    raw = g.normals(p, 0.3, 30)
    assert torch.equal(up.abs(), raw.abs())


@pytest.mark.parametrize("pts", [
    torch.zeros(1, 3), torch.tensor([[0.0, 0, 0], [1, 0, 0]]), torch.ones(5, 3),
    torch.tensor([[0.0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]]),   # collinear, off-axis
    torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]),   # collinear on an axis
])
def test_normals_degenerate_finite_unit(pts):
    n = g.normals(pts, 10.0, 30)
    assert torch.isfinite(n).all()
    assert torch.allclose(n.norm(dim=1), torch.ones(len(pts)))
    f = g.fpfh(pts, n, 10.0, 30)
    assert torch.isfinite(f).all()


def test_normals_degenerate_documented_values():
    assert torch.equal(g.normals(torch.ones(5, 3), 1.0, 30), torch.tensor([[0.0, 0, 1]]).expand(5, 3))
    line = torch.tensor([[0.0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]])
    n = g.normals(line, 10.0, 30)
    assert (n @ torch.tensor([1.0, 1, 1])).abs().max() < 1e-6  # orthogonal to the line


def test_normals_noncontiguous():
    p = sphere(1000)
    big = torch.cat([p, p], dim=1)[:, ::2]
    assert not big.is_contiguous()
    assert torch.equal(g.normals(big, 0.3, 30), g.normals(big.contiguous(), 0.3, 30))


# ------------------------------------------------------------------------------------------
# fpfh
@pytest.mark.parametrize("name,cloud,nr,fr,legacy_rows", [("sphere", sphere(3000), 0.15, 0.3, 0.98),
                                                          ("plane", plane(3000), 0.12, 0.25, 0.85),
                                                          ("box", box(4000), 0.15, 0.3, 0.3)])
def test_fpfh_matches_open3d(name, cloud, nr, fr, legacy_rows):
    n = o3d_normals(cloud, nr, 30)  # identical normals on both sides
    ours = g.fpfh(cloud, n, fr, 100)
    tens = o3d_fpfh_tensor(cloud, n, fr, 100)
    assert torch.allclose(ours, tens, rtol=0, atol=1e-9)
    legacy = o3d_fpfh_legacy(cloud, n, fr, 100)
    # Open3D's legacy API (compiled differently: its dot products round differently) takes the
    # other frame on pairs whose two normals make the same angle with the line up to rounding
    # noise (coplanar normals: both ~1e-17), so rows near such pairs differ by a pair's share;
    # Open3D's own tensor API agrees with us on every row (above).
    rows = ((ours - legacy).abs().max(dim=1).values < 1e-9).double().mean()
    assert rows > legacy_rows, f"{name}: {rows}"


@pytest.mark.slow
def test_fpfh_surface_cloud_100k():
    p = surface_cloud(100_000, dtype=torch.float64)
    n = o3d_normals(p, 0.3, 30)
    ours = g.fpfh(p, n, 0.75, 100)
    tens = o3d_fpfh_tensor(p, n, 0.75, 100)
    assert torch.allclose(ours, tens, rtol=0, atol=1e-9)


def test_fpfh_naive_reference_tiny():
    p = sphere(150, seed=3) + 0.01 * torch.from_numpy(np.random.default_rng(1).normal(size=(150, 3)))
    n = g.normals(p, 0.5, 20)
    assert torch.allclose(g.fpfh(p, n, 0.45, 25), naive_fpfh(p, n, 0.45, 25), rtol=0, atol=1e-9)


def test_fpfh_random_normals_naive_reference():
    # Random (not surface-consistent) normals spread theta over every bin, edges included: the
    # kernel bins theta through a fast approximation with an exact fallback near bin edges.
    rng = np.random.default_rng(7)
    p = torch.from_numpy(rng.uniform(-1, 1, size=(600, 3)))
    n = torch.from_numpy(rng.normal(size=(600, 3)))
    n = n / n.norm(dim=1, keepdim=True)
    assert torch.allclose(g.fpfh(p, n, 0.5, 40), naive_fpfh(p, n, 0.5, 40), rtol=0, atol=1e-9)
    q = surface_cloud(50_000, dtype=torch.float64)
    m = torch.from_numpy(rng.normal(size=(50_000, 3)))
    m = m / m.norm(dim=1, keepdim=True)
    assert torch.allclose(g.fpfh(q, m, 0.6, 60), o3d_fpfh_tensor(q, m, 0.6, 60), rtol=0, atol=1e-9)


def test_fpfh_subhistograms_sum_to_200():
    p = surface_cloud(5000, dtype=torch.float64)
    n = g.normals(p, 1.0, 30)
    f = g.fpfh(p, n, 2.0, 100)
    sums = f.reshape(-1, 3, 11).sum(2)
    assert torch.allclose(sums, torch.full_like(sums, 200.0), atol=1e-9)


def test_fpfh_isolated_point_is_zero_and_duplicates():
    p = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.1, 0.01], [50, 50, 50]])
    p = torch.cat([p, p[:2]]).double()  # coincident copies
    n = g.normals(p, 1.0, 30)
    f = g.fpfh(p, n, 1.0, 100)
    assert torch.isfinite(f).all()
    assert torch.equal(f[4], torch.zeros(33, dtype=f.dtype))
    assert torch.allclose(f, naive_fpfh(p, n, 1.0, 100), atol=1e-9)
    assert torch.allclose(f[:4], o3d_fpfh_tensor(p, n, 1.0, 100)[:4], atol=1e-9)


def test_fpfh_indices_and_dtypes():
    p = surface_cloud(4000, dtype=torch.float64)
    n = g.normals(p, 1.0, 30)
    full = g.fpfh(p, n, 2.0, 64)
    idx = torch.tensor([3, 3999, 0, 17, 3], dtype=torch.int32)
    assert torch.equal(g.fpfh(p, n, 2.0, 64, indices=idx), full[idx.long()])
    assert g.fpfh(p, n, 2.0, 64, indices=torch.zeros(0, dtype=torch.long)).shape == (0, 33)
    f32 = g.fpfh(p.float(), n.float(), 2.0, 64)
    assert f32.dtype == torch.float32 and f32.shape == (4000, 33)
    # float32 input rounds the coordinates, nothing else: same as double on the rounded cloud
    assert torch.allclose(f32.double(), g.fpfh(p.float().double(), n.float().double(), 2.0, 64), atol=1e-4)


# ------------------------------------------------------------------------------------------
# fpfh_variation
@pytest.mark.parametrize("n,k", [(1, 4), (2, 4), (50, 1), (300, 16), (300, 400)])
def test_fpfh_variation_naive(n, k):
    p = torch.rand(n, 3, dtype=torch.float64)
    f = torch.rand(n, 33, dtype=torch.float32) * 100
    ours = g.fpfh_variation(p, f, k)
    assert ours.dtype == torch.float32 and ours.shape == (n,)
    assert torch.allclose(ours.double(), naive_variation(p, f, k), rtol=1e-6, atol=1e-4)


def test_fpfh_variation_duplicates_count_as_neighbours():
    p = torch.tensor([[0.0, 0, 0], [0, 0, 0], [5, 0, 0]])
    f = torch.tensor([[0.0], [3.0], [10.0]], dtype=torch.float64)
    # point 2's nearest other point: 0 and 1 tie, the lower index wins
    assert torch.equal(g.fpfh_variation(p, f, 1), torch.tensor([3.0, 3.0, 10.0], dtype=torch.float64))


# ------------------------------------------------------------------------------------------
# fpfh_with_variation: the two ops above in one pass, same bits
def grid_plane(side=30):
    xy = torch.stack(torch.meshgrid(torch.arange(side + 0.0), torch.arange(side + 0.0), indexing="ij"), -1)
    return torch.cat([xy.reshape(-1, 2), torch.zeros(side * side, 1)], 1)


@pytest.mark.parametrize("name", ["surface", "surface32", "grid_dups", "sparse", "tiny"])
@pytest.mark.parametrize("radius_sp,max_nn,k", [(5, 100, 16), (2, 10, 16), (3, 40, 4), (5, 100, 5000)])
def test_fpfh_with_variation_equals_separate_ops(name, radius_sp, max_nn, k):
    # One index for both parts: grids (exact distance ties), duplicates, sparse points, max_nn
    # below k and k above N all give the separate ops' bits.
    clouds = {
        "surface": lambda: surface_cloud(6000, dtype=torch.float64),
        "surface32": lambda: surface_cloud(6000, dtype=torch.float32),
        "grid_dups": lambda: torch.cat([grid_plane(), grid_plane()[:200], grid_plane()[:50]]),
        "sparse": lambda: torch.rand(2000, 3, dtype=torch.float64),
        "tiny": lambda: torch.rand(3, 3, dtype=torch.float64),
    }
    p = clouds[name]()
    spacing = g.point_spacing(p)
    n = g.normals(p, 2 * spacing, 30)
    f_sep = g.fpfh(p, n, radius_sp * spacing, max_nn)
    v_sep = g.fpfh_variation(p, f_sep, k)
    f, v = g.fpfh_with_variation(p, n, radius_sp * spacing, max_nn, k)
    assert f.dtype == v.dtype == p.dtype and f.shape == (len(p), 33) and v.shape == (len(p),)
    assert torch.equal(f, f_sep)
    assert torch.equal(v, v_sep)


def test_fpfh_with_variation_single_point_and_errors():
    f, v = g.fpfh_with_variation(torch.zeros(1, 3), torch.tensor([[0.0, 0, 1]]), 1.0)
    assert torch.equal(f, torch.zeros(1, 33)) and torch.equal(v, torch.zeros(1))
    with pytest.raises(ValueError, match="points"):  # like every op: no empty cloud
        g.fpfh_with_variation(torch.zeros(0, 3), torch.zeros(0, 3), 1.0)
    p = torch.rand(50, 3)
    n = g.normals(p, 0.3, 10)
    cases = [
        (lambda: g.fpfh_with_variation(p, n[:10], 0.5), "normals"),
        (lambda: g.fpfh_with_variation(p, torch.full_like(n, float("nan")), 0.5), "normals"),
        (lambda: g.fpfh_with_variation(p, n, 0.0), "radius"),
        (lambda: g.fpfh_with_variation(p, n, 0.5, max_nn=0), "max_nn"),
        (lambda: g.fpfh_with_variation(p, n, 0.5, k=0), "k"),
        (lambda: g.fpfh_with_variation(p[:, :2], n, 0.5), "points"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name):
            fn()


# ------------------------------------------------------------------------------------------
# agcs
def bump_cloud(n=12000, seed=0):
    """A flat square with a small smooth bump at (0.5, 0.5): the only place geometry varies."""
    g_ = np.random.default_rng(seed)
    xy = g_.uniform(0, 1, size=(n, 2))
    r2 = ((xy - 0.5) ** 2).sum(1)
    z = 0.04 * np.exp(-r2 / (2 * 0.03 ** 2))
    return torch.from_numpy(np.column_stack([xy, z])), r2


def test_agcs_invariants_and_alpha_zero():
    p, _ = bump_cloud(6000)
    c, var = g.agcs(p, 256, alpha=0.2, return_variation=True)
    assert c.shape == (256,) and c.dtype == torch.int64
    assert len(torch.unique(c)) == 256 and int(c.min()) >= 0 and int(c.max()) < len(p)
    assert var.shape == (len(p),)
    m = round(0.2 * 256)
    high = torch.sort(var, descending=True, stable=True).indices[: math.ceil(0.1 * len(p))]
    assert torch.isin(c[:m], high).all()
    plain = ops.fps(p[None], torch.tensor([len(p)]), torch.tensor([[7]]), 256)[0]
    assert torch.equal(g.agcs(p, 256, alpha=0.0, start_idx=7), plain)
    # the variation-driven centres seed the whole-cloud FPS: the rest is FPS continued from them
    cont = ops.fps(p[None], torch.tensor([len(p)]), c[None, :m], 256)[0]
    assert torch.equal(c, cont)
    all_var = g.agcs(p, 256, alpha=1.0)  # every centre from the high-variation set
    assert len(torch.unique(all_var)) == 256 and torch.isin(all_var, high).all()


def test_agcs_puts_more_centres_on_the_bump():
    p, r2 = bump_cloud(12000)
    on_bump = torch.from_numpy(r2 < 0.08 ** 2)
    c_agcs = g.agcs(p, 400, alpha=0.2, q=0.03, orient_to=("direction", (0.0, 0.0, 1.0)))
    c_fps = g.agcs(p, 400, alpha=0.0)
    # FPS puts ~2% of the centres on the bump (its share of the area); with the top 3% by
    # variation (the bump and its rim) AGCS adds a good part of its 80 variation-driven centres.
    assert int(on_bump[c_agcs].sum()) > int(on_bump[c_fps].sum()) + 20


def test_agcs_centroid_orientation_on_a_closed_surface():
    p = sphere(6000)
    bump = p[:, 2] > 0.97
    p = p * torch.where(bump, 1.03, 1.0)[:, None]  # a raised cap
    c = g.agcs(p, 300, alpha=0.2)
    plain = g.agcs(p, 300, alpha=0.0)
    assert int(bump[c].sum()) > int(bump[plain].sum())


def test_agcs_unit_free_and_point_spacing():
    p, _ = bump_cloud(4000)
    s = g.point_spacing(p)
    assert s > 0
    assert math.isclose(g.point_spacing(p * 1000), 1000 * s, rel_tol=1e-9)
    assert torch.equal(g.agcs(p, 100), g.agcs(p * 1000, 100))
    assert g.point_spacing(torch.ones(10, 3)) == 0.0
    assert g.agcs(torch.ones(10, 3), 1).shape == (1,)


# ------------------------------------------------------------------------------------------
# bad input
def test_bad_inputs():
    p = sphere(100)
    n = g.normals(p, 0.5, 10)
    nan = p.clone()
    nan[3, 1] = float("nan")
    cases = [
        (lambda: g.normals(p, -1.0), "radius"),
        (lambda: g.normals(p, float("nan")), "radius"),
        (lambda: g.normals(p, 0.5, 2), "max_nn"),
        (lambda: g.normals(nan, 0.5), "points"),
        (lambda: g.normals(p[:, :2], 0.5), "points"),
        (lambda: g.normals(p, 0.5, orient_to=("sideways", (0, 0, 1))), "orient_to"),
        (lambda: g.normals(p, 0.5, orient_to=(1.0, 2.0)), "orient_to"),
        (lambda: g.fpfh(p, n[:50], 0.5), "normals"),
        (lambda: g.fpfh(p, n.clone().fill_(float("nan")), 0.5), "normals"),
        (lambda: g.fpfh(p, n, 0.0), "radius"),
        (lambda: g.fpfh(p, n, None), "radius"),
        (lambda: g.fpfh(p, n, 0.5, 0), "max_nn"),
        (lambda: g.fpfh(p, n, 0.5, indices=torch.tensor([0, 100])), "indices"),
        (lambda: g.fpfh(p, n, 0.5, indices=torch.tensor([-1])), "indices"),
        (lambda: g.fpfh(p, n, 0.5, indices=torch.tensor([0.0])), "indices"),
        (lambda: g.fpfh_variation(p, torch.zeros(99, 33)), "features"),
        (lambda: g.fpfh_variation(p, torch.zeros(100, 33), 0), "k"),
        (lambda: g.agcs(p, 101), "n_centers"),
        (lambda: g.agcs(p, 0), "n_centers"),
        (lambda: g.agcs(p, 10, alpha=1.5), "alpha"),
        (lambda: g.agcs(p, 10, alpha=-0.1), "alpha"),
        (lambda: g.agcs(p, 10, q=0.0), "q"),
        (lambda: g.agcs(p, 10, normal_radius=-2.0), "normal_radius"),
        (lambda: g.agcs(p, 10, start_idx=100), "start_idx"),
        (lambda: g.agcs(p, 10, orient_to="up"), "orient_to"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name):
            fn()


def test_opcheck():
    p = sphere(60)
    n = g.normals(p, 0.5, 10)
    torch.library.opcheck(ops.normals, (p, 0.5, 10))
    torch.library.opcheck(ops.fpfh, (p, n, None, 0.5, 20))
    torch.library.opcheck(ops.fpfh, (p, n, torch.tensor([1, 5]), 0.5, 20))
    torch.library.opcheck(ops.fpfh_variation, (p, torch.rand(60, 33), 4))
    torch.library.opcheck(ops.fpfh_with_variation, (p, n, 0.5, 20, 4))


# ------------------------------------------------------------------------------------------
# CUDA vs CPU
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    p = surface_cloud(30000, dtype=dtype)
    n_cpu = g.normals(p, 0.6, 30)
    n_gpu = g.normals(p.cuda(), 0.6, 30).cpu()
    assert torch.allclose(n_gpu, n_cpu, atol=1e-6 if dtype == torch.float32 else 1e-12)
    f_cpu = g.fpfh(p, n_cpu, 1.5, 100)
    f_gpu = g.fpfh(p.cuda(), n_cpu.cuda(), 1.5, 100).cpu()
    assert torch.allclose(f_gpu, f_cpu, atol=1e-3 if dtype == torch.float32 else 1e-9)
    idx = torch.tensor([5, 29999, 5, 0])
    assert torch.allclose(g.fpfh(p.cuda(), n_cpu.cuda(), 1.5, 100, indices=idx.cuda()).cpu(), f_cpu[idx],
                          atol=1e-3 if dtype == torch.float32 else 1e-9)
    v_cpu = g.fpfh_variation(p, f_cpu, 16)
    v_gpu = g.fpfh_variation(p.cuda(), f_cpu.cuda(), 16).cpu()
    # same neighbours in the same (distance, index) order, summed in that order: same bits
    assert torch.equal(v_gpu, v_cpu)
    f_fused, v_fused = g.fpfh_with_variation(p.cuda(), n_cpu.cuda(), 1.5, 100, 16)
    assert torch.equal(f_fused.cpu(), f_gpu) and torch.equal(v_fused, g.fpfh_variation(p.cuda(), f_fused, 16))
    c_cpu = g.agcs(p, 512)
    c_gpu = g.agcs(p.cuda(), 512).cpu()
    assert c_gpu.shape == (512,) and len(torch.unique(c_gpu)) == 512
    assert (c_gpu == c_cpu).double().mean() > 0.9


@pytest.mark.cuda
def test_cuda_degenerate():
    for pts in (torch.zeros(1, 3), torch.ones(5, 3), torch.tensor([[0.0, 0, 0], [1, 1, 1], [2, 2, 2]])):
        n = g.normals(pts.cuda(), 10.0, 30)
        assert torch.equal(n.cpu(), g.normals(pts, 10.0, 30))
        assert torch.isfinite(g.fpfh(pts.cuda(), n, 10.0, 30)).all()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_raw_fpfh_op_rejects_out_of_range_indices(device):
    # Direct torch.ops calls skip the wrapper's checks; the kernels gather points and mark
    # neighbourhoods through these indices, so each backend's glue range-checks them first.
    p = torch.rand(60, 3, dtype=torch.float64, device=device)
    n = torch.nn.functional.normalize(torch.rand(60, 3, dtype=torch.float64, device=device), dim=1)
    for bad in ([0, 60], [-1, 3]):
        with pytest.raises(RuntimeError, match=r"indices must lie in \[0, 60\)"):
            ops.fpfh(p, n, torch.tensor(bad, device=device), 0.5, 20)
