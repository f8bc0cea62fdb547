"""The CUDA kernels (csrc/cuda/*.cu) run on the CPU by tools/cuda_emu, compared with the CPU ops.

No GPU needed: tools/cuda_emu patches the current kernel sources, compiles them with g++ against
an emulated CUDA runtime under ASan+UBSan, and runs each launcher in a child process (see
tools/cuda_emu/README.md). A sanitizer report, an emulator error (deadlock, warp divergence,
a collective after lanes exited), leaked scratch memory, a crash or a hang fails the test.

Exact equality where the project promises the same bits on both backends (fps and knn indices and
distances, normals, fpfh_variation); fpfh within a relative 1e-9 (sums of the same terms), and
nn_search's float32 distances within their rounding. The first test builds the library (about 30 s
on 2 cores; later runs rebuild only what changed). Device stubs (EMU_SMS, EMU_OCC, EMU_COOP) steer
fps into each of its launch modes.
"""

import os
import platform
import shutil
import zlib

import numpy as np
import pytest
import torch

import group3ad_ext  # noqa: F401  (registers torch.ops.group3ad_ext: the CPU oracle)
from tools.cuda_emu import build, runner

pytestmark = pytest.mark.cuda_emu

ops = torch.ops.group3ad_ext
CASE_TIMEOUT = 60  # seconds per child process (a hang fails); each takes a few


@pytest.fixture(scope="session")
def emu_lib():
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the CUDA emulation's fibers are written for x86-64 Linux")
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx}) to build the CUDA emulation")
    if runner.libasan() is None:
        pytest.skip(f"{cxx} has no AddressSanitizer runtime (libasan) for the CUDA emulation")
    return build.build()


def test_build_jobs_follow_max_jobs(monkeypatch):
    monkeypatch.setenv("MAX_JOBS", "1")
    assert build._default_jobs() == 1
    monkeypatch.delenv("MAX_JOBS")
    assert build._default_jobs() == (os.cpu_count() or 1)
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("MAX_JOBS", bad)
        with pytest.raises(build.BuildError, match="MAX_JOBS"):
            build._default_jobs()


def emulate(lib, name, env=None, **kwargs):
    [res] = runner.run(lib, [(name, kwargs)], env=env, timeout=CASE_TIMEOUT)
    assert res["status"] == 0, f"{name}: launcher returned cudaError_t {res['status']}"
    return res


def assert_same(what, got, exp):
    got, exp = np.asarray(got), np.asarray(exp)
    assert got.shape == exp.shape, f"{what}: shape {got.shape} != {exp.shape}"
    same = got == exp
    if got.dtype.kind == "f":
        same |= np.isnan(got) & np.isnan(exp)
    if not same.all():
        bad = np.argwhere(~same)
        w = tuple(bad[0])
        pytest.fail(f"{what}: {len(bad)} of {got.size} differ; first at {w}: emulated {got[w]!r}, expected {exp[w]!r}")


def rng_for(*key):
    """A generator fixed by the case (str hashes vary between runs)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ------------------------------------------------------------------------------------ fps

def _seeds(rng, lengths, S):
    return np.stack([rng.choice(int(L), S, replace=False) for L in lengths]).astype(np.int64)


def check_fps(lib, points, lengths, S, n_samples, env=None, kind=None, blocks=None):
    seeds = _seeds(np.random.default_rng(0), lengths, S)
    lengths = np.asarray(lengths, np.int64)
    res = emulate(lib, "fps", env, points=points, lengths=lengths, seeds=seeds, n_samples=n_samples)
    if kind is not None:
        assert res["kind"] == kind, f"planned {res['kind']} with {res['blocks']} blocks, expected {kind}"
    if blocks is not None:
        assert res["blocks"] == blocks
    exp = ops.fps(torch.from_numpy(points), torch.from_numpy(lengths), torch.from_numpy(seeds), n_samples)
    assert_same("fps indices", res["out"], exp.numpy())


DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("schedule", ["1", "2", "3"])
def test_fps_registers_multi_block(emu_lib, dt, schedule):
    # Default stub (2 SMs x 2): one cloud over 4 blocks, candidates exchanged by grid.sync; under
    # several thread schedules (EMU_SEED), with ties between blocks (an integer grid).
    rng = rng_for("fps", dt)
    env = {"EMU_SEED": schedule}
    check_fps(emu_lib, rng.random((1, 700, 3)).astype(dt), [700], 1, 24, env, kind="coop-registers", blocks=4)
    g = np.stack(np.meshgrid(*[np.arange(5)] * 3), -1).reshape(1, -1, 3).astype(dt)
    check_fps(emu_lib, g, [125], 1, 20, env, kind="coop-registers", blocks=4)


@pytest.mark.parametrize("dt", DTYPES)
def test_fps_seeds_ragged_duplicates(emu_lib, dt):
    rng = rng_for("fps-ragged", dt)
    # S > 1 seeds, then selection; S == n_samples: seeds only, no selection.
    check_fps(emu_lib, rng.random((1, 300, 3)).astype(dt), [300], 3, 12)
    check_fps(emu_lib, rng.random((1, 50, 3)).astype(dt), [50], 6, 6)
    # Ragged batch: clouds share the grid; a length of 7 sampled completely.
    check_fps(emu_lib, rng.random((3, 400, 3)).astype(dt), [400, 7, 150], 1, 7)
    # Duplicates and identical points: ties go to the lowest index; chosen points never win again.
    dup = np.repeat(rng.random((1, 20, 3)).astype(dt), 6, axis=1)
    check_fps(emu_lib, dup, [120], 2, 30)
    check_fps(emu_lib, np.ones((1, 40, 3), dt), [40], 1, 12)


@pytest.mark.parametrize("dt", DTYPES)
def test_fps_any_dim_global_memory(emu_lib, dt):
    rng = rng_for("fps-D", dt)
    check_fps(emu_lib, rng.random((2, 300, 5)).astype(dt), [300, 97], 2, 16, kind="coop-global")
    check_fps(emu_lib, rng.random((1, 200, 1)).astype(dt), [200], 1, 12, kind="coop-global")
    dup = np.repeat(rng.random((1, 15, 7)).astype(dt), 4, axis=1)
    check_fps(emu_lib, dup, [60], 1, 20, kind="coop-global")


@pytest.mark.parametrize("dt", DTYPES)
def test_fps_single_block_modes(emu_lib, dt):
    # One SM, one resident block: 2 points per thread up to 1024 points, 8 up to 4096, then global.
    env = {"EMU_SMS": "1", "EMU_OCC": "1"}
    rng = rng_for("fps-1blk", dt)
    check_fps(emu_lib, rng.random((1, 1025, 3)).astype(dt), [1025], 1, 6, env, kind="coop-registers", blocks=1)
    check_fps(emu_lib, rng.random((1, 4097, 3)).astype(dt), [4097], 1, 5, env, kind="coop-global", blocks=1)


@pytest.mark.parametrize("dt", DTYPES)
def test_fps_step_fallback(emu_lib, dt):
    rng = rng_for("fps-steps", dt)
    # No cooperative launch on the device: two launches per sample.
    env = {"EMU_COOP": "0"}
    check_fps(emu_lib, rng.random((2, 5000, 3)).astype(dt), [5000, 9], 2, 9, env, kind="steps", blocks=3)
    check_fps(emu_lib, rng.random((2, 300, 5)).astype(dt), [300, 40], 3, 10, env, kind="steps")
    check_fps(emu_lib, np.repeat(rng.random((1, 10, 3)).astype(dt), 5, axis=1), [50], 1, 20, env, kind="steps")
    # More clouds than the cooperative grid holds (3 SMs x 2 blocks): the planner falls back.
    env = {"EMU_SMS": "3", "EMU_OCC": "2"}
    check_fps(emu_lib, rng.random((7, 200, 3)).astype(dt), [200, 3, 199, 50, 3, 20, 7], 1, 3, env, kind="steps")
    check_fps(emu_lib, rng.random((6, 200, 3)).astype(dt), [200, 3, 199, 50, 3, 20], 1, 3, env,
              kind="coop-registers", blocks=6)


# ------------------------------------------------------------------------------------ knn

def check_knn(lib, q, p, k, ql=None, pl=None):
    """q (M,3) / p (N,3) for one cloud, or batched (B,M,3) / (B,N,3) with lengths."""
    if q.ndim == 2:
        q, p, ql, pl = q[None], p[None], [q.shape[0]], [p.shape[0]]
    ql, pl = np.asarray(ql, np.int64), np.asarray(pl, np.int64)
    res = emulate(lib, "knn", query=q, points=p, query_lengths=ql, point_lengths=pl, k=k)
    ed, ei = ops.knn(torch.from_numpy(q), torch.from_numpy(p), torch.from_numpy(ql), torch.from_numpy(pl), k)
    assert_same("knn indices", res["idx"], ei.numpy())
    assert_same("knn distances", res["dist"], ed.numpy())


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("k", [1, 16, 17, 40, 100, 256])
def test_knn_grid_each_capacity(emu_lib, dt, k):
    # Candidate capacities 16, 32, 64, 128, 256 (the grid kernel's template instances).
    rng = rng_for("knn", dt, k)
    n = max(300, k + 50)
    p = rng.random((n, 3)).astype(dt)
    q = np.concatenate([p[:20], rng.random((20, 3)).astype(dt)])
    check_knn(emu_lib, q, p, k)


@pytest.mark.parametrize("dt", DTYPES)
def test_knn_brute_force(emu_lib, dt):
    rng = rng_for("knn-brute", dt)
    p = rng.random((400, 3)).astype(dt)
    # k > 256: segmented sort, in chunks of queries (the emulated build shrinks the chunk budget).
    check_knn(emu_lib, rng.random((12, 3)).astype(dt), p, 257)
    d = np.repeat(rng.random((30, 3)).astype(dt), 10, axis=0)
    check_knn(emu_lib, d[::29].copy(), d, 300)  # k == n, duplicates
    # Coordinates whose extent overflows a double: no grid, brute force.
    if dt == np.float64:
        big = (rng.random((50, 3)) * 2 - 1) * 1.7e308
        check_knn(emu_lib, big[:8].copy(), big, 3)


@pytest.mark.parametrize("dt", DTYPES)
def test_knn_geometry_edge_cases(emu_lib, dt):
    rng = rng_for("knn-edges", dt)
    p = rng.random((300, 3)).astype(dt)
    check_knn(emu_lib, (rng.random((40, 3)) * 10 - 5).astype(dt), p, 7)  # queries outside the box
    check_knn(emu_lib, (rng.random((5, 3)) + 1e4).astype(dt), p, 3)  # far outside
    d = np.repeat(rng.random((40, 3)).astype(dt), 6, axis=0)
    check_knn(emu_lib, d, d, 9)  # duplicates: ties to the lower index
    check_knn(emu_lib, np.ones((10, 3), dt), np.ones((50, 3), dt), 5)  # identical: empty box
    check_knn(emu_lib, np.zeros((4, 3), dt), np.ones((50, 3), dt), 50)
    g = np.stack(np.meshgrid(*[np.arange(6)] * 3), -1).reshape(-1, 3).astype(dt)
    check_knn(emu_lib, g + dt(0.5), g, 27)  # integer grid: many exact ties
    flat = rng.random((300, 3)).astype(dt)
    flat[:, 2] = 0.25
    check_knn(emu_lib, flat[::3].copy(), flat, 12)  # a flat axis
    # Ragged batch: an empty query cloud, a 1-point cloud.
    q, pb = rng.random((3, 30, 3)).astype(dt), rng.random((3, 80, 3)).astype(dt)
    check_knn(emu_lib, q, pb, 1, ql=[30, 0, 13], pl=[80, 5, 1])


@pytest.mark.parametrize("dt", DTYPES)
def test_knn_extreme_scales(emu_lib, dt):
    rng = rng_for("knn-scale", dt)
    if dt == np.float32:
        # Squared distances underflow to 0 or subnormals: the bounds' absolute slack keeps ties.
        for _ in range(3):
            p = (rng.random((60, 3)) * 1e-30).astype(dt)
            check_knn(emu_lib, p[::5].copy(), p, 5)
        line = np.array([[1e-23 * i, 0, 0] for i in range(40)], dt)
        check_knn(emu_lib, np.zeros((1, 3), dt), line, 1)
    else:
        # Tiny and huge extents: the cell size is derived without under- or overflow.
        for scale in (1e-120, 1e-300, 1e150):
            p = rng.random((80, 3)) * scale
            check_knn(emu_lib, p[::7].copy(), p, 4)


def _scan(rng, n):
    """A scan-like surface: a bumpy unit sheet with a little depth noise."""
    u = rng.random((n, 2))
    z = 0.1 * np.sin(6 * u[:, 0]) * np.cos(5 * u[:, 1]) + 0.002 * rng.standard_normal(n)
    return np.c_[u, z]


def _outliers(rng, kind):
    """Flying pixels at 50-1000x the sheet's extent (far fewer than the grid's 0.5% quantiles)."""
    if kind == "one-side":
        o = rng.random((10, 3))
        o[:, 0] = 1 + rng.uniform(50, 1000, 10)
        return o
    if kind == "all-sides":  # two per axis and side
        o = rng.random((12, 3))
        for j in range(12):
            a, sign = j // 4, (1 if j % 4 < 2 else -1)
            o[j, a] = 0.5 + sign * rng.uniform(50, 1000)
        return o
    if kind == "blob":  # flying pixels that are each other's neighbours, spread over many cells
        return np.array([300.0, 0.0, 0.0]) + rng.random((16, 3))
    raise ValueError(kind)


def _far_queries(rng, n, scale):
    v = rng.standard_normal((n, 3))
    return 0.5 + scale * v / np.linalg.norm(v, axis=1, keepdims=True)


OUTLIER_KINDS = ["one-side", "all-sides", "blob"]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("kind", OUTLIER_KINDS)
@pytest.mark.parametrize("k", [1, 16, 40, 256])
def test_knn_outliers_exact(emu_lib, dt, kind, k):
    # The grid box comes from robust extents, so the outliers (and far queries) lie outside it,
    # clamped into boundary cells that reach to infinity: results must still be the CPU's bits.
    rng = rng_for("knn-outliers", dt, kind, k)
    out = _outliers(rng, kind)
    p = np.concatenate([_scan(rng, 4000), out]).astype(dt)
    p = p[rng.permutation(len(p))]  # outliers at arbitrary indices
    q = np.concatenate([
        p[::37],                                   # on the sheet
        out, out + rng.normal(0, 0.3, out.shape),  # at and around the outliers
        _far_queries(rng, 8, 2000.0),              # far outside every box
        _far_queries(rng, 8, 3.0),                 # just outside the sheet
    ]).astype(dt)
    check_knn(emu_lib, q, p, k)


@pytest.mark.parametrize("dt", DTYPES)
def test_knn_outliers_huge_coordinates(emu_lib, dt):
    # Outliers at 1e6 (and 1e12 in float64) times the extent: far beyond the box, still exact.
    rng = rng_for("knn-outliers-huge", dt)
    scales = [1e6] if dt == np.float32 else [1e6, 1e12]
    for scale in scales:
        out = _far_queries(rng, 6, scale)
        p = np.concatenate([_scan(rng, 3000), out]).astype(dt)
        q = np.concatenate([p[::29], out, _far_queries(rng, 4, scale / 3)]).astype(dt)
        check_knn(emu_lib, q, p, 9)


@pytest.mark.parametrize("dt", DTYPES)
def test_knn_outliers_keep_search_local(emu_lib, dt):
    # A few flying pixels must not coarsen the grid: the distances evaluated per query on the
    # sheet stay within 2x of the clean cloud's (a box over the outliers made them 100x+).
    rng = rng_for("knn-local", dt)
    sheet = _scan(rng, 4000)
    q = sheet[::4].astype(dt)

    def evals(p):
        p = p.astype(dt)
        res = emulate(emu_lib, "knn", query=q[None], points=p[None], query_lengths=np.array([len(q)]),
                      point_lengths=np.array([len(p)]), k=16)
        ed, ei = ops.knn(torch.from_numpy(q[None]), torch.from_numpy(p[None]), torch.tensor([len(q)]),
                         torch.tensor([len(p)]), 16)
        assert_same("knn indices", res["idx"], ei.numpy())
        assert_same("knn distances", res["dist"], ed.numpy())
        return res["dist_evals"] / len(q)

    clean = evals(sheet)
    assert clean > 16
    near = sheet.copy()
    near[:10, 0] = 1 + rng.uniform(20, 100, 10)  # the brief's flying pixels: 20-100x, one side
    got = {name: evals(p) for name, p in [
        ("20-100x, one side", near),
        ("one-side", np.concatenate([sheet, _outliers(rng, "one-side")])),
        ("all-sides", np.concatenate([sheet, _outliers(rng, "all-sides")])),
        ("blob", np.concatenate([sheet, _outliers(rng, "blob")])),
        # The bounds' margin comes from the grid box: from the true box it would be 1e3x the sheet.
        ("1e12x", np.concatenate([sheet, _far_queries(rng, 6, 1e12)]))]}
    report = ", ".join(f"{name}: {v:.1f}" for name, v in got.items())
    print(f"\n{dt.__name__}: distance evaluations per query: clean {clean:.1f}, {report}")
    assert max(got.values()) <= 2 * clean, f"evaluations per query: clean {clean:.1f}, {report}"


# ------------------------------------------------------------------------------- geometry

def _sphere(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _clouds():
    rng = np.random.default_rng(11)
    return {
        "sphere": _sphere(rng, 500),  # several neighbour-search chunks in the emulated build
        "cube": rng.random((150, 3)),
        "dups": np.repeat(_sphere(rng, 40), 4, axis=0),
        "plane": np.c_[rng.random((120, 2)), np.zeros(120)],
        "identical": np.ones((20, 3)),
        "two": rng.random((2, 3)),
    }


CLOUDS = _clouds()


@pytest.mark.parametrize("name", list(CLOUDS))
def test_normals_fpfh_variation(emu_lib, name):
    p = CLOUDS[name]
    tp = torch.from_numpy(p)
    rng = rng_for("geom", name)
    idx = rng.choice(len(p), min(len(p), 9), replace=False)
    idx = np.r_[idx, idx[:2]]  # repeated queries
    f64 = rng.random((len(p), 33))
    params = [(0.3, 30), (0.0, 8), (0.15, 1)]  # radius + max_nn, no radius (max_nn only), 1 neighbour
    calls, expected = [], []
    for radius, max_nn in params:
        nr = ops.normals(tp, radius, max_nn)
        nr_in = torch.nan_to_num(nr)
        calls += [("normals", dict(points=p, radius=radius, max_nn=max_nn)),
                  ("fpfh", dict(points=p, normals=nr_in.numpy(), indices=None, radius=radius, max_nn=max_nn)),
                  ("fpfh", dict(points=p, normals=nr_in.numpy(), indices=idx, radius=radius, max_nn=max_nn))]
        expected += [("normals", nr.numpy()),
                     ("fpfh", ops.fpfh(tp, nr_in, None, radius, max_nn).numpy()),
                     ("fpfh", ops.fpfh(tp, nr_in, torch.from_numpy(idx), radius, max_nn).numpy())]
    for k in (1, 6, len(p) + 2):  # k beyond n - 1: every other point
        for f in (f64, f64.astype(np.float32)):
            calls.append(("fpfh_variation", dict(points=p, features=f, k=k)))
            expected.append(("variation", ops.fpfh_variation(tp, torch.from_numpy(f), k).numpy()))

    results = runner.run(emu_lib, calls, timeout=CASE_TIMEOUT)
    for (call, kwargs), (key, exp), res in zip(calls, expected, results):
        what = f"{call} radius={kwargs.get('radius')} max_nn={kwargs.get('max_nn')} k={kwargs.get('k')}"
        assert res["status"] == 0, f"{what}: cudaError_t {res['status']}"
        if key == "fpfh":
            np.testing.assert_allclose(res[key], exp, rtol=1e-9, atol=1e-12, err_msg=what)
        else:
            assert_same(what, res[key], exp)


def test_geometry_radius_boundary(emu_lib):
    # A neighbour at squared distance exactly radius2 = the largest double below radius^2 (the
    # strict-radius convention, the same on both backends) is kept.
    for r in np.arange(1.5, 1.9, 1e-3):
        a = np.nextafter(r, 0)
        if a * a == np.nextafter(r * r, 0):
            break
    else:
        pytest.fail("no radius with a representable boundary distance found")
    p = np.array([[0, 0, 0], [a, 0, 0], [0, 0.5, 0.1], [0.3, -0.4, 0.2], [-0.5, 0.1, -0.3], [0.2, 0.2, 0.9]])
    tp = torch.from_numpy(p)
    nr = ops.normals(tp, r, 10)
    results = runner.run(emu_lib, [("normals", dict(points=p, radius=r, max_nn=10)),
                                   ("fpfh", dict(points=p, normals=nr.numpy(), indices=None, radius=r, max_nn=10))],
                         timeout=CASE_TIMEOUT)
    assert_same("normals at the radius boundary", results[0]["normals"], nr.numpy())
    np.testing.assert_allclose(results[1]["fpfh"], ops.fpfh(tp, nr, None, r, 10).numpy(), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------ nn_search

def _nn_data(x, dtype):
    """x as `dtype`; bfloat16 as its uint16 bits (truncated: any bfloat16 values will do)."""
    if dtype == "bfloat16":
        return (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return np.asarray(x).astype(dtype)


def _as_torch(a, dtype):
    return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if dtype == "bfloat16" else torch.from_numpy(a)


def _widened(x, dtype):
    """The kernels' view of the elements: float32 (exact) or, for float64, float64."""
    if dtype == "bfloat16":
        return (x.astype(np.uint32) << 16).view(np.float32)
    return x if dtype == "float64" else x.astype(np.float32)


def approx_candidates(q, b, m, dtype):
    """The candidate pass's arithmetic: per dimension in order, diff rounded to float32 and
    acc = fmaf(diff, diff, acc), in long double (exact product and, for these magnitudes, sum)
    rounded once to float32. Returns the m best (approx d2, lowest index) and the m-th d2."""
    qw, bw = _widened(q, dtype), _widened(b, dtype)
    acc = np.zeros((len(q), len(b)), np.float32)
    for d in range(q.shape[1]):
        diff = (qw[:, None, d] - bw[None, :, d]).astype(np.float32).astype(np.longdouble)
        acc = (diff * diff + acc.astype(np.longdouble)).astype(np.float32)
    order = np.argsort(acc, axis=1, kind="stable")[:, :m]
    return order, np.take_along_axis(acc, order[:, m - 1:m], axis=1)[:, 0]


def check_nn(lib, q, b, k, dtype, max_failed=0.25):
    res = emulate(lib, "nn_search", queries=q, bank=b, k=k, dtype=dtype)
    # The candidate lists (warp-register insertion): exactly the m best approximations.
    m = res["cand_idx"].shape[1]
    exp_idx, exp_worst = approx_candidates(q, b, m, dtype)
    assert_same("nn_search candidates", res["cand_idx"], exp_idx)
    assert_same("nn_search m-th candidate distance", res["cand_worst"], exp_worst)
    failed = res["failed"]
    assert set(np.unique(failed)) <= {0, 1}, "failed flags not written"
    ok = failed == 0
    # The glue brute-forces the failed rows: only the certified ones are the kernels' answers.
    assert ok.mean() >= 1 - max_failed, f"{int((~ok).sum())} of {len(ok)} rows not certified"
    ed, ei = ops.nn_search(_as_torch(q, dtype), _as_torch(b, dtype), k)
    assert_same("nn_search indices", res["idx"][ok], ei.numpy()[ok])
    np.testing.assert_allclose(res["dist"][ok], ed.numpy()[ok], rtol=2e-7, atol=0)
    return res


NN_DTYPES = ["float32", "float64", "float16", "bfloat16"]


@pytest.mark.parametrize("dtype", NN_DTYPES)
def test_nn_search(emu_lib, dtype):
    rng = rng_for("nn", dtype)
    # Several query tiles (32) and bank tiles (128), dims over several chunks of 16, both
    # candidate registers per lane (m > 32), a bank as small as m.
    for Q, B, D, k in ((70, 300, 17, 5), (40, 129, 40, 20), (5, 3, 2, 3), (1, 1, 1, 1)):
        check_nn(emu_lib, _nn_data(rng.random((Q, D)), dtype), _nn_data(rng.random((B, D)), dtype), k, dtype)
    b = _nn_data(rng.random((40, 8)), dtype)
    check_nn(emu_lib, np.repeat(b[:5], 3, 0), np.repeat(b, 3, 0), 4, dtype)  # duplicates: exact ties
    # Identical rows: every distance ties, in lowest-index order. (A bank larger than m could
    # not be certified: the ties reach past the candidates.)
    one = _nn_data(np.ones((12, 4)), dtype)
    check_nn(emu_lib, one[:6], one, 3, dtype)


def test_nn_search_unfilled_candidates_fail_the_row(emu_lib):
    # A NaN query (the glue refuses one; the kernel must still be safe) never enters a candidate
    # list: every slot keeps its "no index" marker. The re-rank must not read bank rows through
    # it and must flag the row for the glue's fallback; the other rows are unaffected.
    rng = rng_for("nn-nan")
    q = rng.random((6, 8)).astype(np.float32)
    q[2, 3] = np.nan
    b = rng.random((50, 8)).astype(np.float32)
    res = emulate(emu_lib, "nn_search", queries=q, bank=b, k=2, dtype="float32")
    assert res["failed"][2] == 1
    rest = np.arange(6) != 2
    assert not res["failed"][rest].any()
    ed, ei = ops.nn_search(torch.from_numpy(q[rest]), torch.from_numpy(b), 2)
    assert_same("nn_search indices", res["idx"][rest], ei.numpy())
