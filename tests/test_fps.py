"""fps / fps_features: exact farthest point sampling against a naive O(N*M) PyTorch reference
and against fpsample's exact modes; CUDA against CPU bit for bit."""

import math

import numpy as np
import pytest
import torch

import group3ad_ext
from group3ad_ext import fps, fps_features

try:
    import fpsample
except ImportError:  # pragma: no cover - peer library is part of the test extras
    fpsample = None


# ----------------------------------------------------------------------------------------------
# Independent oracle: the definition, written out with whole-tensor ops.


def naive_fps(points: torch.Tensor, n_samples: int, seeds=(0,)) -> torch.Tensor:
    """points (N,D). Distances summed per dimension in order (d0*d0 + d1*d1) + d2*d2 ...;
    chosen points are excluded explicitly; ties to the lowest index."""
    n = points.shape[0]
    dist = torch.full((n,), math.inf, dtype=points.dtype)
    chosen = torch.zeros(n, dtype=torch.bool)
    out = []
    for m in range(n_samples):
        if m < len(seeds):
            s = int(seeds[m])
        else:
            d = dist.masked_fill(chosen, -1.0)
            s = int((d == d.max()).nonzero()[0, 0])
        out.append(s)
        diff = points - points[s]
        acc = diff[:, 0] * diff[:, 0]
        for k in range(1, points.shape[1]):
            acc = acc + diff[:, k] * diff[:, k]
        dist = torch.minimum(dist, acc)
        chosen[s] = True
    return torch.tensor(out, dtype=torch.int64)


def surface(n, seed=0, dtype=torch.float32):
    """Points on a bumpy ellipsoid with noise, like a part scan (mm)."""
    g = np.random.default_rng(seed)
    v = g.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = 15.0 * (1 + 0.15 * np.sin(5 * np.arctan2(v[:, 1], v[:, 0])) * np.sin(3 * np.arccos(v[:, 2])))
    p = v * r[:, None] * np.array([1.0, 0.8, 0.6]) + g.normal(scale=0.01, size=(n, 3))
    return torch.from_numpy(p).to(dtype)


def rand(n, d=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g, dtype=torch.float64).to(dtype)


# ----------------------------------------------------------------------------------------------
# Equality with the naive reference.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,m", [(1, 1), (2, 2), (3, 3), (3, 2), (17, 17), (1000, 100), (5000, 300)])
def test_random_matches_naive(n, m, dtype):
    pts = rand(n, dtype=dtype, seed=n)
    start = n // 3
    assert torch.equal(fps(pts, m, start_idx=start), naive_fps(pts, m, (start,)))


def test_surface_cloud_matches_naive():
    pts = surface(10000)
    assert torch.equal(fps(pts, 200, start_idx=123), naive_fps(pts, 200, (123,)))


@pytest.mark.slow
def test_large_surface_matches_naive():
    pts = surface(200_000, seed=3)
    assert torch.equal(fps(pts, 128, start_idx=7), naive_fps(pts, 128, (7,)))


def assert_equal_to_peer_up_to_a_tie(points, ours, theirs):
    """fpsample starts at a random index (its bucket modes ignore start_idx) and breaks exact
    float32 ties its own way: the sequences must agree until they reach a tie, where ours takes
    the lowest index. 1 run in ~60 of the 100k cloud hits such a tie (step 90, two candidates
    at 13.801282 from the chosen set)."""
    differ = (ours != theirs).nonzero()
    if len(differ) == 0:
        return
    j = int(differ[0, 0])
    diff = points[None, :, :] - points[ours[:j], None, :]
    d = (diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]).amin(0)
    a, b = int(ours[j]), int(theirs[j])
    assert d[a] == d[b], f"step {j}: ours {a} at {float(d[a])}, fpsample {b} at {float(d[b])}: not a tie"
    assert a < b


@pytest.mark.skipif(fpsample is None, reason="fpsample not installed")
def test_large_100k_matches_fpsample_and_naive():
    pts = surface(100_000, seed=1)
    theirs = fpsample.bucket_fps_kdline_sampling(pts.numpy(), 1024, h=7)
    theirs = torch.from_numpy(np.asarray(theirs, dtype=np.int64))
    ours = fps(pts, 1024, start_idx=int(theirs[0]))
    assert torch.equal(ours, naive_fps(pts, 1024, (int(theirs[0]),)))
    assert_equal_to_peer_up_to_a_tie(pts, ours, theirs)


def test_tie_helper_rejects_a_real_difference():
    pts = surface(2000, seed=4)
    ours = fps(pts, 50, start_idx=3)
    wrong = ours.clone()
    wrong[20] = ours[30]
    with pytest.raises(AssertionError, match="not a tie"):
        assert_equal_to_peer_up_to_a_tie(pts, ours, wrong)


@pytest.mark.skipif(fpsample is None, reason="fpsample not installed")
@pytest.mark.parametrize("mode", ["kdline", "vanilla"])
def test_fpsample_peer_from_its_first_pick(mode):
    pts = surface(30000, seed=2)
    arr = pts.numpy()
    if mode == "kdline":
        theirs = fpsample.bucket_fps_kdline_sampling(arr, 500, h=7)
    else:
        theirs = fpsample.fps_sampling(arr, 500)
    theirs = torch.from_numpy(np.asarray(theirs, dtype=np.int64))
    ours = fps(pts, 500, start_idx=int(theirs[0]))
    assert_equal_to_peer_up_to_a_tie(pts, ours, theirs)


# ----------------------------------------------------------------------------------------------
# Degenerate clouds.


def test_single_point():
    assert fps(torch.zeros(1, 3), 1).tolist() == [0]


def test_two_and_three_points():
    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [5, 0, 0]])
    assert fps(pts, 3).tolist() == [0, 2, 1]
    assert fps(pts, 2, start_idx=1).tolist() == [1, 2]
    assert fps(pts[:2], 2, start_idx=1).tolist() == [1, 0]


def test_all_identical_is_lowest_unchosen_order():
    pts = torch.full((50, 3), 2.5)
    out = fps(pts, 50, start_idx=7)
    assert out.tolist() == [7] + [i for i in range(50) if i != 7]


def test_duplicates_never_repeat_while_distinct_points_remain():
    base = rand(40, seed=4)
    pts = torch.cat([base, base, base[:10]])  # 90 points, 40 distinct
    out = fps(pts, 90, start_idx=45)
    assert torch.equal(out, naive_fps(pts, 90, (45,)))
    assert sorted(out.tolist()) == list(range(90))
    # The first 40 picks are 40 distinct locations.
    assert len({tuple(p) for p in pts[out[:40]].tolist()}) == 40


def test_heavy_duplicates_large_leaf():
    # Many copies of few locations: exercises leaves whose remaining distances are all 0.
    g = torch.Generator().manual_seed(5)
    pts = torch.randint(0, 4, (3000, 3), generator=g).float()
    out = fps(pts, 3000, start_idx=0)
    assert torch.equal(out[:200], naive_fps(pts, 200, (0,)))
    assert sorted(out.tolist()) == list(range(3000))


def test_collinear_and_planar():
    t = torch.linspace(-3, 7, 501)
    line = torch.stack([t, 2 * t, -t], 1)
    assert torch.equal(fps(line, 60, start_idx=250), naive_fps(line, 60, (250,)))
    plane = rand(2000, seed=6)
    plane[:, 2] = 0.5
    assert torch.equal(fps(plane, 150), naive_fps(plane, 150))


def test_n_samples_equal_n_is_permutation():
    pts = rand(777, seed=7)
    out = fps(pts, 777, start_idx=3)
    assert sorted(out.tolist()) == list(range(777))
    assert torch.equal(out, naive_fps(pts, 777, (3,)))


def test_prefix_property():
    pts = surface(5000, seed=8)
    assert torch.equal(fps(pts, 50, start_idx=9), fps(pts, 400, start_idx=9)[:50])


def test_translation_by_exact_offsets_keeps_indices():
    # Integer coordinates: every difference is exact, so translation cannot change a bit.
    g = torch.Generator().manual_seed(9)
    pts = torch.randint(-500, 500, (3000, 3), generator=g).double()
    a = fps(pts, 200, start_idx=11)
    b = fps(pts + torch.tensor([1024.0, -4096.0, 77.0], dtype=torch.float64), 200, start_idx=11)
    assert torch.equal(a, b)


def test_huge_coordinates_and_tiny_spacing():
    pts = rand(3000, seed=10, dtype=torch.float64) * 1e-6 + 1e6
    assert torch.equal(fps(pts, 100), naive_fps(pts, 100))


def test_non_contiguous_input():
    pts = rand(3000, seed=11)
    nc = pts.t().contiguous().t()
    assert not nc.is_contiguous()
    assert torch.equal(fps(nc, 100), fps(pts, 100))
    strided = rand(6000, seed=12)[::2]
    assert torch.equal(fps(strided, 100), naive_fps(strided.contiguous(), 100))


# ----------------------------------------------------------------------------------------------
# Batches, ragged lengths, seeds.


def test_batched_ragged_matches_per_cloud():
    B, N = 5, 3000
    pts = torch.stack([rand(N, seed=20 + b) for b in range(5)])
    lengths = torch.tensor([3000, 1200, 64, 2999, 500])
    starts = torch.tensor([0, 5, 63, 2998, 17])
    out = fps(pts, 64, start_idx=starts[:, None], lengths=lengths)
    assert out.shape == (B, 64)
    for b in range(B):
        L = int(lengths[b])
        assert torch.equal(out[b], naive_fps(pts[b, :L], 64, (int(starts[b]),)))


def test_many_small_clouds_batch():
    pts = torch.stack([surface(2048, seed=b) for b in range(12)])
    out = fps(pts, 128, start_idx=1)
    for b in range(12):
        assert torch.equal(out[b], fps(pts[b], 128, start_idx=1))
    assert torch.equal(out[3], naive_fps(pts[3], 128, (1,)))


def test_seed_tensor_continues_from_the_seed_set():
    pts = surface(4000, seed=13)
    seeds = torch.tensor([10, 3999, 2000, 5])
    out = fps(pts, 100, start_idx=seeds)
    assert out[:4].tolist() == seeds.tolist()
    assert torch.equal(out, naive_fps(pts, 100, seeds.tolist()))
    assert len(set(out.tolist())) == 100
    # All seeds, nothing more to pick.
    assert fps(pts, 4, start_idx=seeds).tolist() == seeds.tolist()


def test_batched_seeds_per_cloud():
    pts = torch.stack([rand(1000, seed=30), rand(1000, seed=31)])
    seeds = torch.tensor([[1, 2, 3], [900, 800, 700]])
    out = fps(pts, 20, start_idx=seeds)
    for b in range(2):
        assert torch.equal(out[b], naive_fps(pts[b], 20, seeds[b].tolist()))


def test_agcs_style_continuation_reuses_earlier_picks():
    # Picking 30 then continuing from those 30 gives the same as picking 80 at once.
    pts = surface(6000, seed=14)
    first = fps(pts, 30, start_idx=4)
    assert torch.equal(fps(pts, 80, start_idx=first), fps(pts, 80, start_idx=4))


# ----------------------------------------------------------------------------------------------
# Feature space (any D).


@pytest.mark.parametrize("d", [1, 2, 3, 5, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_features_match_naive(d, dtype):
    n, m = (1500, 120) if d < 100 else (700, 50)
    feats = rand(n, d=d, dtype=dtype, seed=d)
    assert torch.equal(fps_features(feats, m, start_idx=2), naive_fps(feats, m, (2,)))


def test_features_d3_equals_points_path():
    pts = surface(3000, seed=15)
    assert torch.equal(fps_features(pts, 300), fps(pts, 300))


def test_features_batched_ragged_and_duplicates():
    f = rand(800, d=16, seed=16)
    feats = torch.stack([torch.cat([f[:400], f[:400]]), f])
    out = fps_features(feats, 800, lengths=torch.tensor([800, 800]))
    assert sorted(out[0].tolist()) == list(range(800))
    out = fps_features(feats, 50, start_idx=torch.tensor([[0], [9]]), lengths=torch.tensor([500, 800]))
    assert torch.equal(out[0], naive_fps(feats[0, :500], 50, (0,)))
    assert torch.equal(out[1], naive_fps(feats[1], 50, (9,)))


@pytest.mark.slow
def test_coreset_sized_features():
    feats = rand(40000, d=128, seed=17)
    out = fps_features(feats, 2000)
    assert torch.equal(out[:100], naive_fps(feats, 100))
    assert len(set(out.tolist())) == 2000


# ----------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument, before any kernel.


BAD_POINTS = [
    (torch.zeros(5, 2), "points"),
    (torch.zeros(5), "points"),
    (torch.zeros(1, 1, 5, 3), "points"),
    (torch.zeros(5, 3, dtype=torch.int64), "points"),
    (torch.zeros(5, 3, dtype=torch.float16), "points"),
    (torch.zeros(0, 3), "points"),
    (torch.tensor([[0.0, 0, 0], [math.nan, 0, 0]]), "points"),
    (torch.tensor([[0.0, 0, 0], [math.inf, 0, 0]]), "points"),
    (np.zeros((5, 3), dtype=np.float32), "points"),
]


@pytest.mark.parametrize("pts,name", BAD_POINTS)
def test_bad_points(pts, name):
    with pytest.raises(ValueError, match=name):
        fps(pts, 1)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(n_samples=0), "n_samples"),
        (dict(n_samples=-1), "n_samples"),
        (dict(n_samples=11), "n_samples"),
        (dict(n_samples=2.0), "n_samples"),
        (dict(n_samples=3, start_idx=10), "start_idx"),
        (dict(n_samples=3, start_idx=-1), "start_idx"),
        (dict(n_samples=3, start_idx=1.5), "start_idx"),
        (dict(n_samples=3, start_idx=torch.tensor([1, 1])), "start_idx"),
        (dict(n_samples=3, start_idx=torch.tensor([1, 10])), "start_idx"),
        (dict(n_samples=3, start_idx=torch.tensor([0.0])), "start_idx"),
        (dict(n_samples=2, start_idx=torch.tensor([0, 1, 2])), "start_idx"),
        (dict(n_samples=3, start_idx=torch.zeros(1, 1, dtype=torch.int64)), "start_idx"),
        (dict(n_samples=3, start_idx=torch.zeros(0, dtype=torch.int64)), "start_idx"),
        (dict(n_samples=3, lengths=torch.tensor([5])), "lengths"),
    ],
)
def test_bad_arguments_single_cloud(kwargs, name):
    with pytest.raises(ValueError, match=name):
        fps(rand(10), **kwargs)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(n_samples=3, lengths=torch.tensor([5, 11])), "lengths"),
        (dict(n_samples=3, lengths=torch.tensor([0, 5])), "lengths"),
        (dict(n_samples=3, lengths=torch.tensor([5])), "lengths"),
        (dict(n_samples=3, lengths=torch.tensor([5.0, 5.0])), "lengths"),
        (dict(n_samples=6, lengths=torch.tensor([5, 10])), "n_samples"),
        (dict(n_samples=3, lengths=torch.tensor([5, 10]), start_idx=7), "start_idx"),
        (dict(n_samples=3, lengths=torch.tensor([5, 10]), start_idx=torch.tensor([[0], [5]])), None),
        (dict(n_samples=3, lengths=torch.tensor([5, 10]), start_idx=torch.tensor([[0], [5], [1]])), "start_idx"),
        (dict(n_samples=3, start_idx=torch.tensor([[0, 1], [2, 2]])), "start_idx"),
    ],
)
def test_bad_arguments_batched(kwargs, name):
    pts = torch.stack([rand(10, seed=1), rand(10, seed=2)])
    if name is None:  # a valid call among the bad ones: seed 5 is in range for cloud 1
        assert fps(pts, **kwargs).shape == (2, 3)
        return
    with pytest.raises(ValueError, match=name):
        fps(pts, **kwargs)


def test_bad_features():
    with pytest.raises(ValueError, match="features"):
        fps_features(torch.zeros(4, 0), 1)
    with pytest.raises(ValueError, match="features"):
        fps_features(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="features"):
        fps_features(torch.tensor([[math.nan, 1.0]]), 1)
    with pytest.raises(ValueError, match="n_samples"):
        fps_features(torch.zeros(4, 7), 5)


def test_wrong_device_lengths_and_seeds():
    pts = torch.stack([rand(10, seed=1), rand(10, seed=2)])
    with pytest.raises(ValueError, match="lengths"):
        fps(pts, 3, lengths=torch.tensor([5, 5], device="meta"))
    with pytest.raises(ValueError, match="start_idx"):
        fps(pts, 3, start_idx=torch.tensor([1], device="meta"))


@pytest.mark.cuda
@pytest.mark.skipif(group3ad_ext.cuda_compiled(), reason="a CUDA build accepts CUDA tensors")
def test_cuda_tensor_in_cpu_only_build_is_a_value_error():
    with pytest.raises(ValueError, match="points"):
        fps(torch.zeros(4, 3, device="cuda"), 1)


# ----------------------------------------------------------------------------------------------
# Registration: opcheck (schema, fake kernel, autograd-free), torch.compile-ready.


def test_opcheck():
    pts = rand(64).unsqueeze(0).repeat(2, 1, 1)
    lens = torch.tensor([64, 40])
    seeds = torch.tensor([[3], [39]])
    torch.library.opcheck(torch.ops.group3ad_ext.fps.default, (pts, lens, seeds, 10))
    feats = rand(50, d=7, dtype=torch.float64).unsqueeze(0)
    torch.library.opcheck(torch.ops.group3ad_ext.fps.default,
                          (feats, torch.tensor([50]), torch.tensor([[1, 2]]), 5),
                          test_utils=("test_schema", "test_faketensor"))


def test_fake_kernel_shape():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        pts = torch.empty(3, 100, 3)
        out = torch.ops.group3ad_ext.fps(pts, torch.empty(3, dtype=torch.int64),
                                         torch.empty(3, 1, dtype=torch.int64), 17)
        assert out.shape == (3, 17) and out.dtype == torch.int64


# ----------------------------------------------------------------------------------------------
# CUDA: bitwise equal to the CPU kernel (run on a GPU machine).


def _both(fn_args, **kw):
    f, args = fn_args
    cpu = f(*args, **kw)
    moved = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    kw_cuda = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    return cpu, f(*moved, **kw_cuda).cpu()


@pytest.mark.cuda
@pytest.mark.slow  # large: kept out of the compute-sanitizer run
def test_cuda_million_points_equals_cpu():
    pts = surface(1_000_000, seed=40)
    cpu, gpu = _both((fps, (pts, 4096)), start_idx=17)
    assert torch.equal(cpu, gpu)


@pytest.mark.cuda
def test_cuda_batched_ragged_equals_cpu():
    pts = torch.stack([surface(8192, seed=b) for b in range(32)])
    lengths = torch.tensor([8192 - 97 * b for b in range(32)])
    seeds = torch.stack([torch.tensor([b, 4000 + b]) for b in range(32)])
    cpu, gpu = _both((fps, (pts, 512)), start_idx=seeds, lengths=lengths)
    assert torch.equal(cpu, gpu)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_float64_and_small_equals_cpu(dtype):
    for n, m in [(1, 1), (2, 2), (3, 3), (1000, 1000), (50_000, 700)]:
        pts = rand(n, dtype=dtype, seed=n)
        cpu, gpu = _both((fps, (pts, m)), start_idx=n // 2)
        assert torch.equal(cpu, gpu), (n, m)


@pytest.mark.cuda
def test_cuda_duplicates_equals_cpu():
    g = torch.Generator().manual_seed(41)
    pts = torch.randint(0, 5, (20000, 3), generator=g).float()
    cpu, gpu = _both((fps, (pts, 20000)))
    assert torch.equal(cpu, gpu)
    assert sorted(gpu.tolist()) == list(range(20000))


@pytest.mark.cuda
@pytest.mark.slow  # large: kept out of the compute-sanitizer run
def test_cuda_features_d128_equals_cpu():
    feats = rand(40000, d=128, seed=42)
    cpu, gpu = _both((fps_features, (feats, 1000)), start_idx=3)
    assert torch.equal(cpu, gpu)
    feats = torch.stack([rand(3000, d=128, seed=43), rand(3000, d=128, seed=44)]).double()
    lengths = torch.tensor([3000, 1777])
    cpu, gpu = _both((fps_features, (feats, 300)), lengths=lengths)
    assert torch.equal(cpu, gpu)


@pytest.mark.cuda
def test_cuda_many_clouds_step_fallback_equals_cpu():
    # More clouds than co-resident blocks: the per-sample multi-launch path.
    pts = rand(3000 * 64, seed=45).reshape(3000, 64, 3)
    cpu, gpu = _both((fps, (pts, 16)), start_idx=2)
    assert torch.equal(cpu, gpu)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_raw_op_rejects_out_of_range_seeds_and_lengths(device):
    # Direct torch.ops calls skip the wrapper's ValueErrors; the kernels would read a seed's
    # point out of bounds, so each backend's glue checks the values first.
    op = torch.ops.group3ad_ext.fps
    pts = torch.rand(2, 50, 3, device=device)
    lens = torch.tensor([50, 40], device=device)
    with pytest.raises(RuntimeError, match=r"start_idx\[1, 0\] = 45 is outside \[0, 40\)"):
        op(pts, lens, torch.tensor([[0], [45]], device=device), 10)
    with pytest.raises(RuntimeError, match=r"start_idx\[0, 0\] = -1"):
        op(pts, lens, torch.tensor([[-1], [0]], device=device), 10)
    with pytest.raises(RuntimeError, match=r"n_samples = 45 exceeds lengths\[1\] = 40"):
        op(pts, lens, torch.zeros(2, 1, dtype=torch.int64, device=device), 45)
    with pytest.raises(RuntimeError, match=r"lengths\[0\] = 51 is outside \[1, 50\]"):
        op(pts, torch.tensor([51, 40], device=device), torch.zeros(2, 1, dtype=torch.int64, device=device), 10)
