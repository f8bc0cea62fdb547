// Launchers of the normals / fpfh / fpfh_variation CUDA kernels (csrc/cuda/geometry_kernel.cu).
// Raw device pointers and a stream only, so the torch glue (geometry_cuda.cpp) and the lean .cu
// share this declaration. All geometry is double precision (inputs converted by the glue).
// Each returns the first CUDA error (cudaSuccess otherwise).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace g3 {
namespace cuda {

// Neighbourhoods of m query points (rows `ids` of the n points, or 0..m-1 when ids is null):
// the min(max_nn, n) nearest by knn_launch, then only d2 <= radius2 kept (radius2 < 0: all).
// lists (m,k) int32 and counts (m,) int32 out, k = min(max_nn, n). Processed in chunks so the
// temporary kNN buffers stay under about 1 GiB.
cudaError_t hybrid_neighbours(const double* points, int64_t n, const int64_t* ids, int64_t m,
                              int64_t max_nn, double radius2, int32_t* lists, int32_t* counts,
                              cudaStream_t stream);

// normals (n,3) from every point's neighbourhood (lists from hybrid_neighbours over all points).
cudaError_t normals_from_lists(const double* points, int64_t n, const int32_t* lists,
                               const int32_t* counts, int64_t k, double* normals,
                               cudaStream_t stream);

// SPFH bin counts (n,33) int32 and per-pair increments (n,) for the m points ids[j] (or 0..m-1)
// from their lists (m,k); rows of other points are left untouched.
cudaError_t spfh_from_lists(const double* points, const double* normals, const int64_t* ids,
                            int64_t m, const int32_t* lists, const int32_t* counts, int64_t k,
                            int32_t* spfh_counts, double* spfh_incr, cudaStream_t stream);

// Sets flags[t] = 1 for the m points ids[j] and every point in their lists.
cudaError_t mark_neighbourhoods(const int64_t* ids, int64_t m, const int32_t* lists,
                                const int32_t* counts, int64_t k, uint8_t* flags,
                                cudaStream_t stream);

// FPFH (m,33) of the points ids[j] (or 0..m-1) from their lists and everyone's SPFH.
cudaError_t fpfh_from_lists(const double* points, const int64_t* ids, int64_t m,
                            const int32_t* lists, const int32_t* counts, int64_t k,
                            const int32_t* spfh_counts, const double* spfh_incr, double* out,
                            cudaStream_t stream);

// Variation (n,) = sum over the k nearest other points of ||f(p) - f(q)||_2; F is float or
// double, dim = feature width. Requires 1 <= k <= n - 1.
template <typename F>
cudaError_t fpfh_variation_launch(const double* points, int64_t n, const F* features, int64_t dim,
                                  int64_t k, double* out, cudaStream_t stream);

}  // namespace cuda
}  // namespace g3
