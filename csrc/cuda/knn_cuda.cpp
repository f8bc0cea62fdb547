// CUDA glue of group3ad_ext::knn: per cloud of the batch, g3::cuda::knn_launch on the current
// stream; padding query rows filled with (inf, -1).
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "cuda/knn_launch.h"
#include "cuda/torch_bridge.h"
#include "op_checks.h"

namespace {

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& query, const at::Tensor& points,
                                            const at::Tensor& query_lengths,
                                            const at::Tensor& point_lengths, int64_t k) {
  g3::check_knn_args(query, points, query_lengths, point_lengths, k);
  const int64_t B = points.size(0), M = query.size(1), N = points.size(1);

  const c10::cuda::CUDAGuard guard(points.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(points.device().index()).stream();
  const at::Tensor q = query.contiguous();
  const at::Tensor p = points.contiguous();
  // The launcher needs the lengths on the host (they size its grid): one small copy.
  const at::Tensor ql = query_lengths.to(at::kCPU).to(at::kLong).contiguous();
  const at::Tensor pl = point_lengths.to(at::kCPU).to(at::kLong).contiguous();
  at::Tensor dist = at::empty({B, M, k}, p.options());
  at::Tensor idx = at::empty({B, M, k}, p.options().dtype(at::kLong));

  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "knn_cuda", [&] {
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* pp = p.data_ptr<scalar_t>();
    scalar_t* dp = dist.data_ptr<scalar_t>();
    int64_t* ip = idx.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t nq = ql.data_ptr<int64_t>()[b], np = pl.data_ptr<int64_t>()[b];
      g3::check_knn_cloud(b, nq, np, M, N, k);
      if (nq > 0) {
        const cudaError_t err = g3::cuda::knn_launch<scalar_t>(qp + b * M * 3, nq, pp + b * N * 3, np, k,
                                                               dp + b * M * k, ip + b * M * k, stream);
        g3::cuda::check_status(err, "knn (CUDA)");
      }
      if (nq < M) {
        dist.select(0, b).narrow(0, nq, M - nq).fill_(std::numeric_limits<scalar_t>::infinity());
        idx.select(0, b).narrow(0, nq, M - nq).fill_(-1);
      }
    }
  });
  return {dist, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CUDA, m) {
  m.impl("knn", &knn_cuda);
}
