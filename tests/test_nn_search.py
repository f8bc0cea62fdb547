"""nn_search against a float64 torch brute force (lowest-index ties) and faiss IndexFlatL2."""

import numpy as np
import pytest
import torch

import group3ad_ext
from group3ad_ext import nn_search


def brute_force(queries, bank, k):
    """Float64 direct differences, stable sort: exact distances, ties to the lower index."""
    q = queries.double().cpu()
    b = bank.double().cpu()
    d2 = ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    d2, idx = torch.sort(d2, dim=1, stable=True)
    return d2[:, :k].sqrt(), idx[:, :k]


def check_exact(queries, bank, k):
    dist, idx = nn_search(queries, bank, k)
    ref_d, ref_i = brute_force(queries, bank, k)
    assert dist.dtype == torch.float32 and idx.dtype == torch.int64
    assert dist.shape == (queries.shape[0], k) and idx.shape == (queries.shape[0], k)
    assert torch.equal(idx.cpu(), ref_i)
    # float64 distance rounded once to float32
    torch.testing.assert_close(dist.cpu().double(), ref_d, rtol=2 ** -23, atol=0)
    assert bool((dist >= 0).all())
    return dist, idx


def clustered(n, d, centers=8, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centers, d, generator=g) * 3
    lab = torch.randint(0, centers, (n,), generator=g)
    return c[lab] + spread * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("d", [1, 3, 128, 1152])
@pytest.mark.parametrize("k", [1, 5])
def test_random_matches_brute_force(d, k):
    g = torch.Generator().manual_seed(d + k)
    bank = torch.randn(300, d, generator=g)
    queries = torch.randn(70, d, generator=g)
    check_exact(queries, bank, k)


@pytest.mark.parametrize("d", [3, 128, 1152])
def test_clustered_matches_brute_force(d):
    bank = clustered(400, d, seed=1)
    queries = clustered(50, d, seed=2)
    check_exact(queries, bank, 3)


def test_duplicate_bank_rows_tie_to_lower_index():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(20, 16, generator=g)
    bank = base.repeat(30, 1)  # every row 30 times: more duplicates than candidates
    queries = torch.cat([base[:5], torch.randn(5, 16, generator=g)])
    dist, idx = check_exact(queries, bank, 4)
    assert torch.equal(idx[:5, 0], torch.arange(5))
    assert torch.equal(dist[:5, 0], torch.zeros(5))


def test_all_identical_bank():
    bank = torch.full((50, 8), 2.5)
    queries = torch.randn(7, 8)
    dist, idx = check_exact(queries, bank, 3)
    assert torch.equal(idx, torch.arange(3).expand(7, 3))


def test_self_distance_is_exactly_zero():
    bank = torch.randn(500, 64) * 10 + 3
    dist, idx = nn_search(bank, bank, 1)
    assert torch.equal(idx[:, 0], torch.arange(500))
    assert torch.equal(dist[:, 0], torch.zeros(500))


@pytest.mark.parametrize("offset", [1e4, -3e5])
def test_large_offset_does_not_cancel(offset):
    # torch.cdist's matmul formula loses everything here; distances are ~1.
    g = torch.Generator().manual_seed(4)
    bank = torch.randn(300, 128, generator=g) * 0.1 + offset
    queries = torch.cat([bank[:10], torch.randn(30, 128, generator=g) * 0.1 + offset])
    dist, _ = check_exact(queries, bank, 2)
    assert torch.equal(dist[:10, 0], torch.zeros(10))


def test_tiny_distances_among_large_norms():
    # Neighbours 1e-3 apart on vectors of norm ~3e3: the expansion's error bound exceeds the
    # gaps, so the certification must fall back rather than guess.
    g = torch.Generator().manual_seed(5)
    base = torch.randn(1, 256, generator=g) * 200
    bank = base + 1e-3 * torch.randn(200, 256, generator=g)
    queries = base + 1e-3 * torch.randn(20, 256, generator=g)
    check_exact(queries, bank, 3)


def test_single_query_and_single_bank_row():
    g = torch.Generator().manual_seed(6)
    bank = torch.randn(100, 32, generator=g)
    check_exact(torch.randn(1, 32, generator=g), bank, 7)
    one = torch.randn(1, 32, generator=g)
    dist, idx = check_exact(torch.randn(9, 32, generator=g), one, 1)
    assert torch.equal(idx, torch.zeros(9, 1, dtype=torch.int64))


def test_k_equals_bank_size_sorts_everything():
    g = torch.Generator().manual_seed(7)
    check_exact(torch.randn(6, 5, generator=g), torch.randn(40, 5, generator=g), 40)


def test_empty_queries():
    dist, idx = nn_search(torch.empty(0, 12), torch.randn(5, 12), 2)
    assert dist.shape == (0, 2) and idx.shape == (0, 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_are_exact_on_their_values(dtype):
    g = torch.Generator().manual_seed(8)
    bank = torch.randn(200, 96, generator=g).to(dtype)
    queries = torch.cat([bank[:4], torch.randn(20, 96, generator=g).to(dtype)])
    dist, idx = check_exact(queries, bank, 3)  # reference widens the same values
    assert dist.dtype == torch.float32
    assert torch.equal(dist[:4, 0], torch.zeros(4))


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(9)
    bank = torch.randn(64, 60, generator=g)[:, ::2]
    queries = torch.randn(30, 100, generator=g).t()
    assert not bank.is_contiguous() and not queries.is_contiguous()
    check_exact(queries, bank, 2)


def test_tiles_larger_than_one_gemm_block():
    # More queries than one query tile (1024) and more bank rows than one bank tile (4096).
    g = torch.Generator().manual_seed(10)
    bank = clustered(4500, 3, centers=50, spread=0.3, seed=11)
    queries = torch.randn(1100, 3, generator=g) * 3
    dist, idx = nn_search(queries, bank, 2)
    ref_d, ref_i = brute_force(queries, bank, 2)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist.double(), ref_d, rtol=2 ** -23, atol=0)


@pytest.mark.parametrize("d", [3, 1152])
def test_against_faiss_index_flat_l2(d):
    faiss = pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(12)
    bank = torch.randn(2000, d, generator=g)
    queries = torch.randn(300, d, generator=g)
    index = faiss.IndexFlatL2(d)
    index.add(bank.numpy())
    f_d2, f_i = index.search(queries.numpy(), 4)
    dist, idx = nn_search(queries, bank, 4)
    # faiss rounds the float32 expansion: compare squared distances loosely, indices exactly
    # (random data has no near-ties at this scale).
    assert np.array_equal(idx.numpy(), f_i)
    np.testing.assert_allclose(dist.numpy() ** 2, f_d2, rtol=1e-4, atol=1e-3)


def test_matches_across_many_sizes_property():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=40, deadline=None)
    @hypothesis.given(q=st.integers(1, 20), b=st.integers(1, 60), d=st.integers(1, 20),
                      k=st.integers(1, 60), dup=st.booleans(), seed=st.integers(0, 2 ** 16))
    def run(q, b, d, k, dup, seed):
        k = min(k, b)
        g = torch.Generator().manual_seed(seed)
        bank = torch.randint(-3, 4, (b, d), generator=g).float()  # integers: many exact ties
        if dup:
            bank = bank * 0
        queries = torch.randint(-3, 4, (q, d), generator=g).float()
        check_exact(queries, bank, k)

    run()


def test_opcheck():
    g = torch.Generator().manual_seed(13)
    torch.library.opcheck(torch.ops.group3ad_ext.nn_search,
                          (torch.randn(9, 7, generator=g), torch.randn(20, 7, generator=g), 3))


def test_torch_compile_uses_fake_kernel():
    g = torch.Generator().manual_seed(14)
    q, b = torch.randn(5, 4, generator=g), torch.randn(11, 4, generator=g)
    fn = torch.compile(lambda x, y: nn_search(x, y, 2)[0] * 2, fullgraph=False)
    torch.testing.assert_close(fn(q, b), nn_search(q, b, 2)[0] * 2)


# --- bad input -------------------------------------------------------------------------------

def test_dimension_mismatch():
    with pytest.raises(ValueError, match="bank"):
        nn_search(torch.randn(3, 4), torch.randn(5, 6))


def test_wrong_rank():
    with pytest.raises(ValueError, match="queries"):
        nn_search(torch.randn(3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="bank"):
        nn_search(torch.randn(3, 3), torch.randn(1, 5, 3))


def test_empty_bank():
    with pytest.raises(ValueError, match="bank"):
        nn_search(torch.randn(3, 4), torch.empty(0, 4))


@pytest.mark.parametrize("k", [0, 6, -1])
def test_k_out_of_range(k):
    with pytest.raises(ValueError, match="k"):
        nn_search(torch.randn(3, 4), torch.randn(5, 4), k)


def test_k_not_int():
    with pytest.raises(ValueError, match="k"):
        nn_search(torch.randn(3, 4), torch.randn(5, 4), 1.5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["queries", "bank"])
def test_non_finite_rows(bad, which):
    q, b = torch.randn(3, 4), torch.randn(5, 4)
    (q if which == "queries" else b)[1, 2] = bad
    with pytest.raises(ValueError, match=which):
        nn_search(q, b)


def test_dtype_mismatch_and_integer_dtype():
    with pytest.raises(ValueError, match="bank"):
        nn_search(torch.randn(3, 4), torch.randn(5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="queries"):
        nn_search(torch.ones(3, 4, dtype=torch.int64), torch.ones(5, 4, dtype=torch.int64))


def test_not_a_tensor():
    with pytest.raises(ValueError, match="queries"):
        nn_search(np.zeros((3, 4), np.float32), torch.randn(5, 4))


@pytest.mark.slow
def test_large_bank_matches_brute_force_in_chunks():
    g = torch.Generator().manual_seed(15)
    bank = torch.randn(100_000, 16, generator=g)
    queries = torch.randn(300, 16, generator=g)
    dist, idx = nn_search(queries, bank, 3)
    ref_d, ref_i = brute_force(queries, bank, 3)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist.double(), ref_d, rtol=2 ** -23, atol=0)


# --- CUDA ------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("d", [1, 3, 128, 1152])
@pytest.mark.parametrize("k", [1, 7, 100])
def test_cuda_matches_brute_force_and_cpu(d, k):
    g = torch.Generator().manual_seed(d * 1000 + k)
    bank = clustered(3000, d, centers=20, spread=0.5, seed=d) + 1e3
    queries = torch.cat([bank[:17], clustered(500, d, centers=20, spread=0.5, seed=d + 1) + 1e3])
    bank = torch.cat([bank, bank[:40]])  # duplicates
    dist, idx = check_exact(queries.cuda(), bank.cuda(), k)
    assert dist.is_cuda and idx.is_cuda
    c_dist, c_idx = nn_search(queries, bank, k)
    assert torch.equal(idx.cpu(), c_idx)
    assert torch.equal(dist.cpu(), c_dist)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_cuda_other_dtypes(dtype):
    g = torch.Generator().manual_seed(16)
    bank = torch.randn(700, 1152, generator=g).to(dtype)
    queries = torch.cat([bank[:3], torch.randn(200, 1152, generator=g).to(dtype)])
    dist, _ = check_exact(queries.cuda(), bank.cuda(), 2)
    assert torch.equal(dist[:3, 0].cpu(), torch.zeros(3))


@pytest.mark.cuda
def test_cuda_large_offset_and_all_duplicates():
    bank = torch.full((300, 64), 1e4).cuda()
    queries = (torch.randn(10, 64) + 1e4).cuda()
    check_exact(queries, bank, 5)


@pytest.mark.cuda
def test_cuda_opcheck():
    g = torch.Generator().manual_seed(17)
    torch.library.opcheck(torch.ops.group3ad_ext.nn_search,
                          (torch.randn(9, 7, generator=g).cuda(), torch.randn(20, 7, generator=g).cuda(), 3))
