// CPU kernel of group3ad_ext::knn: one KnnIndex per cloud of the batch, queried in parallel.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "cpu/knn_index.h"
#include "op_checks.h"

namespace {

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& query, const at::Tensor& points,
                                           const at::Tensor& query_lengths,
                                           const at::Tensor& point_lengths, int64_t k) {
  g3::check_knn_args(query, points, query_lengths, point_lengths, k);
  const int64_t B = points.size(0), M = query.size(1), N = points.size(1);

  const at::Tensor q = query.contiguous();
  const at::Tensor p = points.contiguous();
  const at::Tensor ql = query_lengths.to(at::kLong).contiguous();
  const at::Tensor pl = point_lengths.to(at::kLong).contiguous();
  at::Tensor dist = at::empty({B, M, k}, p.options());
  at::Tensor idx = at::empty({B, M, k}, p.options().dtype(at::kLong));

  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "knn_cpu", [&] {
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* pp = p.data_ptr<scalar_t>();
    const int64_t* qlp = ql.data_ptr<int64_t>();
    const int64_t* plp = pl.data_ptr<int64_t>();
    scalar_t* dp = dist.data_ptr<scalar_t>();
    int64_t* ip = idx.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t nq = qlp[b], np = plp[b];
      g3::check_knn_cloud(b, nq, np, M, N, k);
      scalar_t* db = dp + b * M * k;
      int64_t* ib = ip + b * M * k;
      if (nq > 0) {
        g3::cpu::KnnIndex<scalar_t> index(pp + b * N * 3, np);
        index.query(qp + b * M * 3, nq, k, db, ib);
      }
      const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
      for (int64_t j = nq * k; j < M * k; ++j) {
        db[j] = inf;
        ib[j] = -1;
      }
    }
  });
  return {dist, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CPU, m) {
  m.impl("knn", &knn_cpu);
}
