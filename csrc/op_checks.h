// Schema-level invariants of the ops, checked by every backend's glue before it touches data.
// The Python wrappers raise ValueErrors for a caller's mistakes first; these guard direct
// torch.ops calls. One copy for the CPU and the CUDA glue (host code only).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace g3 {

// A NaN or Inf value hangs the CUDA grid's sizing, reads out of bounds in the CUDA memory-bank
// rerank and leaves CPU knn rows unwritten: refused here. One reduction (and, on CUDA, one sync).
inline void check_finite(const at::Tensor& t, const char* op, const char* name) {
  if (t.numel() == 0) return;
  const auto [lo, hi] = at::aminmax(t);
  TORCH_CHECK(std::isfinite(lo.item<double>()) && std::isfinite(hi.item<double>()), op, ": ", name,
              " must be finite (no NaN or Inf)");
}

inline void check_knn_args(const at::Tensor& query, const at::Tensor& points,
                           const at::Tensor& query_lengths, const at::Tensor& point_lengths,
                           int64_t k) {
  TORCH_CHECK(query.dim() == 3 && query.size(2) == 3, "knn: query must be (B,M,3)");
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3, "knn: points must be (B,N,3)");
  TORCH_CHECK(query.size(0) == points.size(0), "knn: query and points batch sizes differ");
  TORCH_CHECK(query.scalar_type() == points.scalar_type(), "knn: query and points dtypes differ");
  TORCH_CHECK(query.scalar_type() == at::kFloat || query.scalar_type() == at::kDouble,
              "knn: points must be float32 or float64");
  TORCH_CHECK(query.device() == points.device(), "knn: query and points are on different devices");
  const int64_t B = points.size(0);
  TORCH_CHECK(query_lengths.dim() == 1 && query_lengths.size(0) == B, "knn: query_lengths must be (B,)");
  TORCH_CHECK(point_lengths.dim() == 1 && point_lengths.size(0) == B, "knn: point_lengths must be (B,)");
  TORCH_CHECK(k >= 1, "knn: k must be >= 1");
  check_finite(query, "knn", "query");
  check_finite(points, "knn", "points");
}

// A geometry op's (N,3) float32/float64 input, finite.
inline void check_points3(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.size(1) == 3, op, ": ", name, " must have shape (N,3)");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64");
  check_finite(t, op, name);
}

inline void check_nn_search_args(const at::Tensor& queries, const at::Tensor& bank, int64_t k) {
  TORCH_CHECK(queries.dim() == 2 && bank.dim() == 2, "nn_search: queries (Q,D) and bank (B,D) expected");
  TORCH_CHECK(queries.size(1) == bank.size(1), "nn_search: queries and bank differ in D");
  TORCH_CHECK(queries.size(1) >= 1, "nn_search: D must be >= 1");
  TORCH_CHECK(queries.scalar_type() == bank.scalar_type(), "nn_search: queries and bank differ in dtype");
  TORCH_CHECK(queries.device() == bank.device(), "nn_search: queries and bank on different devices");
  TORCH_CHECK(bank.size(0) >= 1, "nn_search: empty bank");
  TORCH_CHECK(k >= 1 && k <= bank.size(0), "nn_search: need 1 <= k <= B");
  check_finite(queries, "nn_search", "queries");
  check_finite(bank, "nn_search", "bank");
}

// One cloud b of a knn batch: nq query rows and np points used of M and N, k neighbours.
inline void check_knn_cloud(int64_t b, int64_t nq, int64_t np, int64_t M, int64_t N, int64_t k) {
  TORCH_CHECK(nq >= 0 && nq <= M, "knn: query_lengths[", b, "] = ", nq, " is outside [0, ", M, "]");
  TORCH_CHECK(np >= 1 && np <= N, "knn: point_lengths[", b, "] = ", np, " is outside [1, ", N, "]");
  TORCH_CHECK(k <= np, "knn: k = ", k, " exceeds point_lengths[", b, "] = ", np);
}

inline void check_fps_args(const at::Tensor& points, const at::Tensor& lengths,
                           const at::Tensor& start_idx, int64_t n_samples) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) >= 1, "fps: points must be (B,N,D), D >= 1");
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "fps: points must be float32 or float64");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && start_idx.scalar_type() == at::kLong,
              "fps: lengths and start_idx must be int64");
  TORCH_CHECK(lengths.device() == points.device() && start_idx.device() == points.device(),
              "fps: points, lengths and start_idx must be on the same device");
  const int64_t B = points.size(0);
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == B, "fps: lengths must be (B,)");
  TORCH_CHECK(start_idx.dim() == 2 && start_idx.size(0) == B && start_idx.size(1) >= 1 &&
                  start_idx.size(1) <= n_samples,
              "fps: start_idx must be (B,S) with 1 <= S <= n_samples");
  TORCH_CHECK(n_samples >= 1, "fps: n_samples must be >= 1");
  check_finite(points, "fps", "points");
}

// One cloud b of an fps batch: its length and its S seeds (host values), n_samples of N.
inline void check_fps_cloud(int64_t b, int64_t length, const int64_t* seeds, int64_t S, int64_t N,
                            int64_t n_samples) {
  TORCH_CHECK(length >= 1 && length <= N, "fps: lengths[", b, "] = ", length, " is outside [1, ", N, "]");
  TORCH_CHECK(n_samples <= length, "fps: n_samples = ", n_samples, " exceeds lengths[", b, "] = ", length);
  for (int64_t j = 0; j < S; ++j) {
    TORCH_CHECK(seeds[j] >= 0 && seeds[j] < length, "fps: start_idx[", b, ", ", j, "] = ", seeds[j],
                " is outside [0, ", length, ")");
  }
}

}  // namespace g3
