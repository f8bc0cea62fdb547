// The one place where group3ad_ext's op schemas are declared. Backends register kernels in
// their own files (csrc/cpu/*_cpu.cpp with TORCH_LIBRARY_IMPL(group3ad_ext, CPU, m),
// csrc/cuda/*_cuda.cpp with ... CUDA ...). Python wrappers in group3ad_ext/ validate inputs
// (ValueError naming the argument) before calling these, and register fake kernels.
#include <torch/library.h>

TORCH_LIBRARY(group3ad_ext, m) {
  // points (B,N,D) float32/float64 contiguous, lengths (B,) int64, start_idx (B,S) int64 with
  // 1 <= S <= n_samples (the first S picks, in order); returns (B,n_samples) int64.
  // Exact farthest point sampling, ties to the lowest index.
  m.def("fps(Tensor points, Tensor lengths, Tensor start_idx, int n_samples) -> Tensor");

  // query (B,M,3), points (B,N,3) same float dtype, query_lengths (B,), point_lengths (B,)
  // int64; returns dist2 (B,M,k) (points' dtype) and idx (B,M,k) int64, sorted ascending,
  // ties to the lower index. Query rows at or past query_lengths[b] get dist2=inf, idx=-1.
  m.def("knn(Tensor query, Tensor points, Tensor query_lengths, Tensor point_lengths, int k) -> (Tensor, Tensor)");

  // points (N,3) -> (N,3) unit normals from PCA over the hybrid neighbourhood (at most max_nn
  // nearest within radius; radius <= 0 means max_nn nearest). Unoriented.
  m.def("normals(Tensor points, float radius, int max_nn) -> Tensor");

  // points (N,3), normals (N,3), indices (Q,) int64 or None -> (Q,33) (or (N,33)) Open3D FPFH.
  m.def("fpfh(Tensor points, Tensor normals, Tensor? indices, float radius, int max_nn) -> Tensor");

  // points (N,3), features (N,F) -> (N,) sum over the k nearest other points of ||f(p)-f(n)||_2.
  m.def("fpfh_variation(Tensor points, Tensor features, int k) -> Tensor");

  // points (N,3), normals (N,3) -> features (N,33) and variation (N,): fpfh(points, normals,
  // None, radius, max_nn) then fpfh_variation(points, features, k), same values, one index.
  m.def("fpfh_with_variation(Tensor points, Tensor normals, float radius, int max_nn, int k) -> (Tensor, Tensor)");

  // queries (Q,D), bank (B,D) float32/float16/bfloat16 -> dist (Q,k) float32 (Euclidean, not
  // squared) and idx (Q,k) int64, sorted ascending, ties to the lower index.
  m.def("nn_search(Tensor queries, Tensor bank, int k) -> (Tensor, Tensor)");
}
