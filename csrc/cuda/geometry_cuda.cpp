// CUDA glue of normals, fpfh and fpfh_variation: converts to double, allocates outputs and the
// neighbour lists with torch, and runs csrc/cuda/geometry_kernel.cu on the current stream.
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

#include "cuda/geometry_kernel.h"
#include "cuda/torch_bridge.h"
#include "op_checks.h"

namespace {

constexpr int64_t kBins = 33;

using g3::cuda::check_status;

// Same strict-radius convention as the CPU path: keep d2 < radius^2.
double hybrid_radius2(double radius) {
  if (!(radius > 0.0)) return -1.0;
  const double r2 = radius * radius;
  return r2 > 0.0 ? std::nextafter(r2, 0.0) : 0.0;
}

at::Tensor as_double_points(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor");
  g3::check_points3(t, op, name);
  return t.to(at::kDouble).contiguous();
}

void check_same_device(const at::Tensor& t, const at::Tensor& points, const char* name) {
  TORCH_CHECK(t.device() == points.device(), name, " must be on ", points.device(), " like points, got ",
              t.device());
}

void check_size(int64_t n) {
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "at most 2^31-1 points are supported");
}

struct Lists {
  at::Tensor idx;     // (m,k) int32
  at::Tensor counts;  // (m,) int32
  int64_t k;
};

Lists neighbours(const at::Tensor& p, const int64_t* ids, int64_t m, int64_t max_nn, double radius,
                 cudaStream_t stream) {
  const int64_t n = p.size(0);
  Lists l;
  l.k = std::min(max_nn, n);
  l.idx = at::empty({m, l.k}, p.options().dtype(at::kInt));
  l.counts = at::empty({m}, p.options().dtype(at::kInt));
  check_status(g3::cuda::hybrid_neighbours(p.data_ptr<double>(), n, ids, m, max_nn,
                                           hybrid_radius2(radius), l.idx.data_ptr<int32_t>(),
                                           l.counts.data_ptr<int32_t>(), stream),
               "hybrid neighbour search");
  return l;
}

at::Tensor normals_cuda(const at::Tensor& points, double radius, int64_t max_nn) {
  TORCH_CHECK(max_nn >= 1, "max_nn must be >= 1");
  c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = as_double_points(points, "normals", "points");
  const int64_t n = p.size(0);
  check_size(n);
  at::Tensor out = at::empty({n, 3}, p.options());
  if (n == 0) return out.to(points.scalar_type());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const Lists l = neighbours(p, nullptr, n, max_nn, radius, stream);
  check_status(g3::cuda::normals_from_lists(p.data_ptr<double>(), n, l.idx.data_ptr<int32_t>(),
                                            l.counts.data_ptr<int32_t>(), l.k,
                                            out.data_ptr<double>(), stream),
               "normals kernel");
  return out.to(points.scalar_type());
}

at::Tensor fpfh_cuda(const at::Tensor& points, const at::Tensor& normals,
                     const std::optional<at::Tensor>& indices, double radius, int64_t max_nn) {
  TORCH_CHECK(max_nn >= 1, "max_nn must be >= 1");
  c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = as_double_points(points, "fpfh", "points");
  check_same_device(normals, points, "normals");
  const at::Tensor nr = as_double_points(normals, "fpfh", "normals");
  const int64_t n = p.size(0);
  check_size(n);
  TORCH_CHECK(nr.size(0) == n, "normals must have as many rows as points");
  at::Tensor q;
  if (indices.has_value()) {
    TORCH_CHECK(indices->dim() == 1, "indices must be 1-D");
    check_same_device(*indices, points, "indices");
    q = indices->to(at::kLong).contiguous();
    // The kernels gather points and mark flags through these indices: one sync to range-check.
    if (q.numel() > 0) {
      const auto [lo, hi] = at::aminmax(q);
      const int64_t lo_v = lo.item<int64_t>(), hi_v = hi.item<int64_t>();
      TORCH_CHECK(lo_v >= 0 && hi_v < n, "indices must lie in [0, ", n, "), got values in [", lo_v, ", ",
                  hi_v, "]");
    }
  }
  const int64_t nq = indices.has_value() ? q.size(0) : n;
  at::Tensor out = at::zeros({nq, kBins}, p.options());
  if (n == 0 || nq == 0) return out.to(points.scalar_type());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const double* pp = p.data_ptr<double>();
  at::Tensor spfh_counts = at::zeros({n, kBins}, p.options().dtype(at::kInt));
  at::Tensor spfh_incr = at::zeros({n}, p.options());

  const int64_t* qids = indices.has_value() ? q.data_ptr<int64_t>() : nullptr;
  const Lists ql = neighbours(p, qids, nq, max_nn, radius, stream);
  // Points whose SPFH is needed: every point, or the queries and their neighbours.
  at::Tensor need;
  const int64_t* need_ids = nullptr;
  int64_t nneed = n;
  const Lists* nl = &ql;
  Lists need_lists;
  if (indices.has_value()) {
    at::Tensor flags = at::zeros({n}, p.options().dtype(at::kByte));
    check_status(g3::cuda::mark_neighbourhoods(qids, nq, ql.idx.data_ptr<int32_t>(),
                                               ql.counts.data_ptr<int32_t>(), ql.k,
                                               flags.data_ptr<uint8_t>(), stream),
                 "neighbourhood marking");
    need = at::nonzero(flags).reshape({-1}).contiguous();
    need_ids = need.data_ptr<int64_t>();
    nneed = need.size(0);
    need_lists = neighbours(p, need_ids, nneed, max_nn, radius, stream);
    nl = &need_lists;
  }
  check_status(g3::cuda::spfh_from_lists(pp, nr.data_ptr<double>(), need_ids, nneed,
                                         nl->idx.data_ptr<int32_t>(), nl->counts.data_ptr<int32_t>(),
                                         nl->k, spfh_counts.data_ptr<int32_t>(),
                                         spfh_incr.data_ptr<double>(), stream),
               "SPFH kernel");
  check_status(g3::cuda::fpfh_from_lists(pp, qids, nq, ql.idx.data_ptr<int32_t>(),
                                         ql.counts.data_ptr<int32_t>(), ql.k,
                                         spfh_counts.data_ptr<int32_t>(),
                                         spfh_incr.data_ptr<double>(), out.data_ptr<double>(), stream),
               "FPFH kernel");
  return out.to(points.scalar_type());
}

// fpfh_variation over checked inputs: p (N,3) double contiguous, f (N,F) float32/float64, both on
// the current device, k >= 1.
at::Tensor variation_of(const at::Tensor& p, const at::Tensor& features, int64_t k) {
  const int64_t n = p.size(0);
  const at::Tensor f = features.contiguous();
  at::Tensor out = at::zeros({n}, p.options());
  const int64_t kk = std::min<int64_t>(k, n - 1);
  if (n <= 1 || kk < 1) return out.to(f.scalar_type());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  cudaError_t err;
  if (f.scalar_type() == at::kFloat) {
    err = g3::cuda::fpfh_variation_launch<float>(p.data_ptr<double>(), n, f.data_ptr<float>(),
                                                 f.size(1), kk, out.data_ptr<double>(), stream);
  } else {
    err = g3::cuda::fpfh_variation_launch<double>(p.data_ptr<double>(), n, f.data_ptr<double>(),
                                                  f.size(1), kk, out.data_ptr<double>(), stream);
  }
  check_status(err, "fpfh_variation kernel");
  return out.to(f.scalar_type());
}

at::Tensor fpfh_variation_cuda(const at::Tensor& points, const at::Tensor& features, int64_t k) {
  TORCH_CHECK(k >= 1, "k must be >= 1");
  c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = as_double_points(points, "fpfh_variation", "points");
  check_same_device(features, points, "features");
  TORCH_CHECK(features.dim() == 2 && features.size(0) == p.size(0),
              "features must have shape (N,F) with N = points rows");
  TORCH_CHECK(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble,
              "features must be float32 or float64");
  g3::check_finite(features, "fpfh_variation", "features");
  return variation_of(p, features, k);
}

// The two ops in sequence (each builds its own grid; the same values as the CPU op). fpfh_cuda
// checks points and normals; its features need no check.
std::tuple<at::Tensor, at::Tensor> fpfh_with_variation_cuda(const at::Tensor& points, const at::Tensor& normals,
                                                            double radius, int64_t max_nn, int64_t k) {
  TORCH_CHECK(k >= 1, "k must be >= 1");
  at::Tensor features = fpfh_cuda(points, normals, std::nullopt, radius, max_nn);
  c10::cuda::CUDAGuard guard(points.device());
  return {features, variation_of(points.to(at::kDouble).contiguous(), features, k)};
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CUDA, m) {
  m.impl("normals", &normals_cuda);
  m.impl("fpfh", &fpfh_cuda);
  m.impl("fpfh_variation", &fpfh_variation_cuda);
  m.impl("fpfh_with_variation", &fpfh_with_variation_cuda);
}
