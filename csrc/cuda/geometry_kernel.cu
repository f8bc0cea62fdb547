// CUDA kernels of normals, fpfh and fpfh_variation: one thread per point over the per-element
// math of csrc/common/geometry_math.h (the same code the CPU loops run). Neighbourhoods come from
// the grid kNN (knn_launch, k = max_nn) filtered by radius once and stored as int32 lists, so
// FPFH searches each point's neighbourhood a single time.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/geometry_math.h"
#include "cuda/geometry_kernel.h"
#include "cuda/knn_launch.h"
#include "cuda/torch_bridge.h"

namespace g3 {
namespace cuda {
namespace {

namespace gm = g3::geom;

constexpr int kThreads = 128;
constexpr int64_t kTempBudget = int64_t(1) << 30;  // bytes of kNN output per chunk

int blocks_for(int64_t m) { return static_cast<int>((m + kThreads - 1) / kThreads); }

__device__ __forceinline__ int64_t row_id(const int64_t* ids, int64_t j) { return ids ? ids[j] : j; }

__global__ void compact_kernel(const double* d2, const int64_t* idx, int64_t m, int64_t k,
                               double radius2, int32_t* lists, int32_t* counts) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= m) return;
  int32_t c = 0;
  for (int64_t t = 0; t < k; ++t) {
    const double d = d2[j * k + t];
    if (radius2 >= 0.0 && d > radius2) break;  // sorted ascending: the rest are farther
    lists[j * k + t] = static_cast<int32_t>(idx[j * k + t]);
    ++c;
  }
  counts[j] = c;
}

__global__ void gather_points_kernel(const double* points, const int64_t* ids, int64_t m,
                                     double* out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= m) return;
  const int64_t i = ids[j];
  out[3 * j] = points[3 * i];
  out[3 * j + 1] = points[3 * i + 1];
  out[3 * j + 2] = points[3 * i + 2];
}

__global__ void normals_kernel(const double* points, int64_t n, const int32_t* lists,
                               const int32_t* counts, int64_t k, double* normals) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const double* q = points + 3 * i;
  gm::Moments mo;
  const int32_t c = counts[i];
  for (int32_t t = 0; t < c; ++t) {
    const double* x = points + 3 * static_cast<int64_t>(lists[i * k + t]);
    gm::moments_add(mo, x[0] - q[0], x[1] - q[1], x[2] - q[2]);
  }
  gm::normal_from_moments(mo, normals + 3 * i);
}

__global__ void spfh_kernel(const double* points, const double* normals, const int64_t* ids,
                            int64_t m, const int32_t* lists, const int32_t* counts, int64_t k,
                            int32_t* spfh_counts, double* spfh_incr) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= m) return;
  const int64_t i = row_id(ids, j);
  int32_t hist[gm::kFpfhBins];
  for (int b = 0; b < gm::kFpfhBins; ++b) hist[b] = 0;
  const int32_t c = counts[j];
  // Position 0 is the point itself or a coincident copy (a zero pair either way): skipped.
  for (int32_t t = 1; t < c; ++t) {
    const int64_t o = lists[j * k + t];
    double f[4];
    int bins[3];
    gm::pair_feature(points + 3 * i, normals + 3 * i, points + 3 * o, normals + 3 * o, f);
    gm::pair_bins(f, bins);
    hist[bins[0]] += 1;
    hist[bins[1]] += 1;
    hist[bins[2]] += 1;
  }
  for (int b = 0; b < gm::kFpfhBins; ++b) spfh_counts[i * gm::kFpfhBins + b] = hist[b];
  spfh_incr[i] = gm::spfh_increment(c);
}

__global__ void mark_kernel(const int64_t* ids, int64_t m, const int32_t* lists,
                            const int32_t* counts, int64_t k, uint8_t* flags) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= m) return;
  flags[row_id(ids, j)] = 1;
  const int32_t c = counts[j];
  for (int32_t t = 0; t < c; ++t) flags[lists[j * k + t]] = 1;
}

__global__ void fpfh_kernel(const double* points, const int64_t* ids, int64_t m,
                            const int32_t* lists, const int32_t* counts, int64_t k,
                            const int32_t* spfh_counts, const double* spfh_incr, double* out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= m) return;
  const int64_t i = row_id(ids, j);
  double* row = out + j * gm::kFpfhBins;
  const int32_t c = counts[j];
  if (c <= 1) {
    for (int b = 0; b < gm::kFpfhBins; ++b) row[b] = 0.0;
    return;
  }
  double acc[gm::kFpfhBins];
  for (int b = 0; b < gm::kFpfhBins; ++b) acc[b] = 0.0;
  const double* q = points + 3 * i;
  for (int32_t t = 1; t < c; ++t) {
    const int64_t o = lists[j * k + t];
    const double* x = points + 3 * o;
    const double d2 = g3::sq_dist3(q[0], q[1], q[2], x[0], x[1], x[2]);
    if (d2 == 0.0) continue;
    gm::fpfh_accumulate(spfh_counts + o * gm::kFpfhBins, spfh_incr[o] / d2, acc);
  }
  gm::fpfh_finish(acc, spfh_counts + i * gm::kFpfhBins, spfh_incr[i], row);
}

template <typename F>
__global__ void variation_kernel(const int64_t* idx, int64_t start, int64_t m, int64_t kq,
                                 int64_t k, const F* features, int64_t dim, double* out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= m) return;
  const int64_t i = start + j;
  double total = 0.0;
  int64_t used = 0;
  for (int64_t t = 0; t < kq && used < k; ++t) {
    const int64_t o = idx[j * kq + t];
    if (o == i) continue;
    total += gm::feature_distance(features + dim * i, features + dim * o, dim);
    ++used;
  }
  out[i] = total;
}

struct Temp {
  double* d2 = nullptr;
  int64_t* idx = nullptr;
  double* q = nullptr;
  ~Temp() {
    temp_free(d2);
    temp_free(idx);
    temp_free(q);
  }
};

}  // namespace

cudaError_t hybrid_neighbours(const double* points, int64_t n, const int64_t* ids, int64_t m,
                              int64_t max_nn, double radius2, int32_t* lists, int32_t* counts,
                              cudaStream_t stream) {
  if (m == 0 || n == 0) return cudaSuccess;
  const int64_t k = std::min(max_nn, n);
  const int64_t chunk = std::max<int64_t>(1, std::min(m, kTempBudget / (16 * k)));
  Temp tmp;
  cudaError_t err = temp_alloc(&tmp.d2, chunk * k * sizeof(double), stream);
  if (err == cudaSuccess) err = temp_alloc(&tmp.idx, chunk * k * sizeof(int64_t), stream);
  if (err == cudaSuccess && ids)
    err = temp_alloc(&tmp.q, chunk * 3 * sizeof(double), stream);
  for (int64_t start = 0; err == cudaSuccess && start < m; start += chunk) {
    const int64_t c = std::min(chunk, m - start);
    const double* q = points + 3 * start;
    if (ids) {
      gather_points_kernel<<<blocks_for(c), kThreads, 0, stream>>>(points, ids + start, c, tmp.q);
      if ((err = cudaGetLastError()) != cudaSuccess) break;
      q = tmp.q;
    }
    err = knn_launch<double>(q, c, points, n, k, tmp.d2, tmp.idx, stream);
    if (err != cudaSuccess) break;
    compact_kernel<<<blocks_for(c), kThreads, 0, stream>>>(tmp.d2, tmp.idx, c, k, radius2,
                                                          lists + start * k, counts + start);
    err = cudaGetLastError();
  }
  return err;
}

cudaError_t normals_from_lists(const double* points, int64_t n, const int32_t* lists,
                               const int32_t* counts, int64_t k, double* normals,
                               cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  normals_kernel<<<blocks_for(n), kThreads, 0, stream>>>(points, n, lists, counts, k, normals);
  return cudaGetLastError();
}

cudaError_t spfh_from_lists(const double* points, const double* normals, const int64_t* ids,
                            int64_t m, const int32_t* lists, const int32_t* counts, int64_t k,
                            int32_t* spfh_counts, double* spfh_incr, cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  spfh_kernel<<<blocks_for(m), kThreads, 0, stream>>>(points, normals, ids, m, lists, counts, k,
                                                     spfh_counts, spfh_incr);
  return cudaGetLastError();
}

cudaError_t mark_neighbourhoods(const int64_t* ids, int64_t m, const int32_t* lists,
                                const int32_t* counts, int64_t k, uint8_t* flags,
                                cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  mark_kernel<<<blocks_for(m), kThreads, 0, stream>>>(ids, m, lists, counts, k, flags);
  return cudaGetLastError();
}

cudaError_t fpfh_from_lists(const double* points, const int64_t* ids, int64_t m,
                            const int32_t* lists, const int32_t* counts, int64_t k,
                            const int32_t* spfh_counts, const double* spfh_incr, double* out,
                            cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  fpfh_kernel<<<blocks_for(m), kThreads, 0, stream>>>(points, ids, m, lists, counts, k,
                                                     spfh_counts, spfh_incr, out);
  return cudaGetLastError();
}

template <typename F>
cudaError_t fpfh_variation_launch(const double* points, int64_t n, const F* features, int64_t dim,
                                  int64_t k, double* out, cudaStream_t stream) {
  if (n <= 1 || k < 1) return cudaSuccess;
  const int64_t kq = std::min(k + 1, n);
  const int64_t chunk = std::max<int64_t>(1, std::min(n, kTempBudget / (16 * kq)));
  Temp tmp;
  cudaError_t err = temp_alloc(&tmp.d2, chunk * kq * sizeof(double), stream);
  if (err == cudaSuccess) err = temp_alloc(&tmp.idx, chunk * kq * sizeof(int64_t), stream);
  for (int64_t start = 0; err == cudaSuccess && start < n; start += chunk) {
    const int64_t c = std::min(chunk, n - start);
    err = knn_launch<double>(points + 3 * start, c, points, n, kq, tmp.d2, tmp.idx, stream);
    if (err != cudaSuccess) break;
    variation_kernel<F><<<blocks_for(c), kThreads, 0, stream>>>(tmp.idx, start, c, kq, k,
                                                               features, dim, out);
    err = cudaGetLastError();
  }
  return err;
}

template cudaError_t fpfh_variation_launch<float>(const double*, int64_t, const float*, int64_t,
                                                  int64_t, double*, cudaStream_t);
template cudaError_t fpfh_variation_launch<double>(const double*, int64_t, const double*, int64_t,
                                                   int64_t, double*, cudaStream_t);

}  // namespace cuda
}  // namespace g3
