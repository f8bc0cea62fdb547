// CUDA glue of nn_search: fused candidate kernel + exact re-rank (csrc/cuda/nn_search_kernel.cu)
// on the current stream; the few queries it cannot certify, and every query when k needs more
// candidates than the kernel keeps in registers, are answered by a float64 brute force in row
// chunks (direct differences, stable sort: lowest-index ties), never a full Q x B matrix.
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cdist.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "common/nn_search_bounds.h"
#include "cuda/nn_search_launch.h"
#include "cuda/torch_bridge.h"
#include "op_checks.h"

namespace {

constexpr int64_t kBruteForceChunkBytes = int64_t{256} << 20;

g3::cuda::NnDtype nn_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return g3::cuda::NnDtype::kFloat32;
    case at::kDouble: return g3::cuda::NnDtype::kFloat64;
    case at::kHalf: return g3::cuda::NnDtype::kFloat16;
    case at::kBFloat16: return g3::cuda::NnDtype::kBFloat16;
    default: TORCH_CHECK(false, "nn_search: unsupported dtype ", t);
  }
}

// Exact float64 answers for the given query rows (rows: int64 indices on the device).
void brute_force_rows(const at::Tensor& queries, const at::Tensor& bank, int64_t k,
                      const at::Tensor& rows, at::Tensor& dist, at::Tensor& idx) {
  const at::Tensor bank64 = bank.to(at::kDouble);
  const int64_t chunk = std::max<int64_t>(1, kBruteForceChunkBytes / (8 * bank.size(0)));
  for (int64_t s = 0; s < rows.numel(); s += chunk) {
    const at::Tensor r = rows.narrow(0, s, std::min(chunk, rows.numel() - s));
    const at::Tensor q64 = queries.index_select(0, r).to(at::kDouble);
    // compute_mode 2: direct differences, never the cancelling matmul expansion
    const at::Tensor d = at::cdist(q64, bank64, 2.0, 2);
    const auto sorted = at::sort(d, /*stable=*/true, /*dim=*/1, /*descending=*/false);
    dist.index_copy_(0, r, std::get<0>(sorted).narrow(1, 0, k).to(at::kFloat));
    idx.index_copy_(0, r, std::get<1>(sorted).narrow(1, 0, k));
  }
}

std::tuple<at::Tensor, at::Tensor> nn_search_cuda(const at::Tensor& queries, const at::Tensor& bank,
                                                  int64_t k) {
  g3::check_nn_search_args(queries, bank, k);
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t n_query = queries.size(0), n_bank = bank.size(0), dims = queries.size(1);
  at::Tensor dist = at::empty({n_query, k}, queries.options().dtype(at::kFloat));
  at::Tensor idx = at::empty({n_query, k}, queries.options().dtype(at::kLong));
  if (n_query == 0) return {dist, idx};
  const at::Tensor q = queries.contiguous();
  const at::Tensor b = bank.contiguous();
  const g3::cuda::NnDtype dtype = nn_dtype(q.scalar_type());

  const int64_t m = g3::nn_candidate_count(k, n_bank);
  at::Tensor pending;
  if (m <= g3::cuda::kNnMaxCandidates) {
    at::Tensor cand_idx = at::empty({n_query, m}, idx.options());
    at::Tensor cand_worst = at::empty({n_query}, dist.options());
    at::Tensor failed = at::empty({n_query}, q.options().dtype(at::kByte));
    const cudaError_t err = g3::cuda::nn_search_launch(
        dtype, q.data_ptr(), b.data_ptr(), n_query, n_bank, dims, k, m,
        cand_idx.data_ptr<int64_t>(), cand_worst.data_ptr<float>(), dist.data_ptr<float>(),
        idx.data_ptr<int64_t>(), failed.data_ptr<uint8_t>(), c10::cuda::getCurrentCUDAStream());
    g3::cuda::check_status(err, "nn_search CUDA kernel");
    pending = at::nonzero(failed).view({-1});
  } else {
    pending = at::arange(n_query, idx.options());
  }
  if (pending.numel() > 0) brute_force_rows(q, b, k, pending, dist, idx);
  return {dist, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CUDA, m) { m.impl("nn_search", &nn_search_cuda); }
