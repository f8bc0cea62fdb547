// Exact kNN on CUDA (implements g3::cuda::knn_launch, csrc/cuda/knn_launch.h).
//
// k <= kMaxThreadK: a uniform grid built on the GPU. Cell size from the grid box and n (about
// two cells per point over the box volume, so a surface scan gets a few tens of points per
// occupied cell). The grid box is robust to outliers: the 0.5%/99.5% quantiles of a strided
// sample of 4096 points per axis, padded by a quarter of that range and cut to the min/max box,
// so a few flying pixels far from the object do not make every cell hold thousands of points.
// Points and queries outside it are clamped into the boundary cells, which the bounds treat as
// reaching to infinity on their outer sides. Points sorted by cell with cub's stable radix sort
// (within a cell they stay in index order), cell_start from a binary search per cell. One thread
// per query, queries visited in cell order (neighbouring threads touch the same cells): rings of
// cells at growing Chebyshev distance around the query's cell, a sorted candidate list of
// (d2, index) in local memory, cells skipped when their box is farther than the current k-th
// distance, stop when the box of everything outside the searched block is farther than the k-th
// distance.
//
// k > kMaxThreadK (up to n): exact brute force in chunks of queries: all n distances of a chunk,
// cub's stable segmented sort by distance (values are the indices in increasing order, so ties
// keep the lower index first), first k per row. Memory is one chunk x n, never m x n.
//
// Pruning and stopping are exact, not approximately right: the bounds are evaluated in double
// with a margin that covers the binning's rounding and shrunk by a relative 1e-5, which is more
// than the rounding of a float distance, and by a few subnormals for distances that underflow,
// so a point whose computed distance could tie or beat the k-th is always visited. Candidate
// order uses g3::better_min on sq_dist3 values, the same comparison as the CPU KnnIndex, so
// both backends return the same bits.
#include <cub/cub.cuh>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/g3_macros.h"
#include "common/robust_box.h"
#include "cuda/knn_launch.h"
#include "cuda/torch_bridge.h"

namespace g3 {
namespace cuda {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxThreadK = 256;
constexpr double kBoundShrink = 1.0 - 1e-5;
// Absolute slack of the bounds: a T distance that underflows to 0 or a subnormal must not lose
// a tie to a bound a hair above it (float32 coordinates ~1e-30 apart otherwise pick idx 7 over 0).
template <typename T>
constexpr double kBoundSlack = 4.0 * double(std::numeric_limits<T>::denorm_min());
constexpr size_t kBruteChunkBytes = size_t(512) << 20;

#define G3_TRY(expr)                       \
  do {                                     \
    cudaError_t err_ = (expr);             \
    if (err_ != cudaSuccess) return err_;  \
  } while (0)

// Cells cover the box [origin, origin + dims * h); coordinates outside it are clamped into the
// boundary cells, which therefore reach to infinity on their outer sides (block_bound).
template <typename T>
struct Grid {
  double origin[3];
  double h;       // cell edge
  double inv_h;
  double margin;  // covers the binning's rounding, in length units
  int64_t dims[3];
  int64_t cells;
  const T* pts;             // (n,3) sorted by cell
  const int64_t* sidx;      // sorted position -> original index
  const int64_t* start;     // (cells+1) first sorted position of each cell
};

// Clamped, so a coordinate far outside the box (an outlier, a far query; the product may be
// +-inf) lands in a boundary cell; never NaN, as coordinates are finite and inv_h > 0.
template <typename T>
__device__ __forceinline__ int64_t cell_coord(const Grid<T>& g, T v, int a) {
  double c = floor((double(v) - g.origin[a]) * g.inv_h);
  c = c < 0.0 ? 0.0 : c;
  const double hi = double(g.dims[a] - 1);
  c = c > hi ? hi : c;
  return int64_t(c);
}

template <typename T>
__device__ __forceinline__ uint32_t cell_key(const Grid<T>& g, const T* p) {
  const int64_t x = cell_coord(g, p[0], 0), y = cell_coord(g, p[1], 1), z = cell_coord(g, p[2], 2);
  return uint32_t((z * g.dims[1] + y) * g.dims[0] + x);
}

// ------------------------------------------------------------------------------ bounding box

template <typename T>
__global__ void bbox_partial_kernel(const T* p, int64_t n, T* partial) {
  __shared__ T s[6][kThreads];
  T lo[3], hi[3];
  for (int a = 0; a < 3; ++a) lo[a] = hi[a] = p[a];
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    for (int a = 0; a < 3; ++a) {
      const T v = p[3 * i + a];
      lo[a] = v < lo[a] ? v : lo[a];
      hi[a] = v > hi[a] ? v : hi[a];
    }
  for (int a = 0; a < 3; ++a) {
    s[a][threadIdx.x] = lo[a];
    s[3 + a][threadIdx.x] = hi[a];
  }
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w)
      for (int a = 0; a < 3; ++a) {
        const T l = s[a][threadIdx.x + w], h = s[3 + a][threadIdx.x + w];
        s[a][threadIdx.x] = l < s[a][threadIdx.x] ? l : s[a][threadIdx.x];
        s[3 + a][threadIdx.x] = h > s[3 + a][threadIdx.x] ? h : s[3 + a][threadIdx.x];
      }
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int c = 0; c < 6; ++c) partial[6 * blockIdx.x + c] = s[c][0];
}

// The strided sample of common/robust_box.h.
template <typename T>
__global__ void sample_points_kernel(const T* p, int64_t n, int64_t s, T* out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= s) return;
  const int64_t j = robust_box_sample_index(i, n, s);
  for (int a = 0; a < 3; ++a) out[3 * i + a] = p[3 * j + a];
}

// ------------------------------------------------------------------------------ grid build

template <typename T>
__global__ void point_keys_kernel(Grid<T> g, const T* p, int64_t n, uint32_t* keys, int64_t* vals) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  keys[i] = cell_key(g, p + 3 * i);
  vals[i] = i;
}

template <typename T>
__global__ void gather_points_kernel(const T* p, const int64_t* sidx, int64_t n, T* out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t s = sidx[i];
  out[3 * i] = p[3 * s];
  out[3 * i + 1] = p[3 * s + 1];
  out[3 * i + 2] = p[3 * s + 2];
}

// start[c] = first sorted position whose key >= c (c in [0, cells]).
__global__ void cell_start_kernel(const uint32_t* keys, int64_t n, int64_t cells, int64_t* start) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c > cells) return;
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (int64_t(keys[mid]) < c) lo = mid + 1; else hi = mid;
  }
  start[c] = lo;
}

// ------------------------------------------------------------------------------ grid search

template <typename T, int CAP>
struct Candidates {
  T d[CAP];
  int64_t i[CAP];
  int cnt;
  int k;

  __device__ __forceinline__ void offer(T dv, int64_t iv) {
    if (cnt == k && !better_min(dv, iv, d[k - 1], i[k - 1])) return;
    int j = cnt < k ? cnt++ : k - 1;
    while (j > 0 && better_min(dv, iv, d[j - 1], i[j - 1])) {
      d[j] = d[j - 1];
      i[j] = i[j - 1];
      --j;
    }
    d[j] = dv;
    i[j] = iv;
  }
};

// Lower bound of the distance^2 from q to anything in the cell box [lo, hi) (per axis, in
// cells), shrunk so it never exceeds a computed sq_dist3 of a point binned there. A side on the
// grid's edge is open: points beyond the box were clamped into those cells, so their true
// coordinates may lie anywhere out there (and so may q's, with points between it and the box).
template <typename T>
__device__ __forceinline__ double block_bound(const Grid<T>& g, const double q[3], const int64_t lo[3],
                                              const int64_t hi[3]) {
  double s = 0;
  for (int a = 0; a < 3; ++a) {
    const double blo = lo[a] == 0 ? -INFINITY : g.origin[a] + double(lo[a]) * g.h - g.margin;
    const double bhi = hi[a] == g.dims[a] ? INFINITY : g.origin[a] + double(hi[a]) * g.h + g.margin;
    double gap = 0;
    if (q[a] < blo) gap = blo - q[a];
    else if (q[a] > bhi) gap = q[a] - bhi;
    s += gap * gap;
  }
  return s * kBoundShrink - kBoundSlack<T>;
}

template <typename T, int CAP>
__global__ void __launch_bounds__(kThreads) grid_knn_kernel(Grid<T> g, const T* query, const int64_t* order,
                                                            int64_t m, int k, T* out_d, int64_t* out_i) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= m) return;
  const int64_t qi = order[t];
  const T qx = query[3 * qi], qy = query[3 * qi + 1], qz = query[3 * qi + 2];
  const double q[3] = {double(qx), double(qy), double(qz)};
  const T qv[3] = {qx, qy, qz};
  int64_t c[3];
  for (int a = 0; a < 3; ++a) c[a] = cell_coord(g, qv[a], a);

  Candidates<T, CAP> cand;
  cand.cnt = 0;
  cand.k = k;
  const int64_t maxr = max(max(g.dims[0], g.dims[1]), g.dims[2]);
  for (int64_t r = 0; r <= maxr; ++r) {
    const int64_t z0 = max(c[2] - r, int64_t(0)), z1 = min(c[2] + r, g.dims[2] - 1);
    const int64_t y0 = max(c[1] - r, int64_t(0)), y1 = min(c[1] + r, g.dims[1] - 1);
    const int64_t x0 = max(c[0] - r, int64_t(0)), x1 = min(c[0] + r, g.dims[0] - 1);
    for (int64_t z = z0; z <= z1; ++z) {
      const bool zface = z == c[2] - r || z == c[2] + r;
      for (int64_t y = y0; y <= y1; ++y) {
        const bool face = zface || y == c[1] - r || y == c[1] + r;
        // Inside the shell only the two x ends belong to ring r.
        const int64_t step = face ? 1 : (2 * r > 0 ? 2 * r : 1);
        for (int64_t x = face ? x0 : c[0] - r; x <= (face ? x1 : c[0] + r); x += step) {
          if (x < 0 || x >= g.dims[0]) continue;
          const int64_t cell = (z * g.dims[1] + y) * g.dims[0] + x;
          const int64_t s = g.start[cell], e = g.start[cell + 1];
          if (s == e) continue;
          if (cand.cnt == k) {
            const int64_t lo[3] = {x, y, z}, hi[3] = {x + 1, y + 1, z + 1};
            if (block_bound(g, q, lo, hi) > double(cand.d[k - 1])) continue;
          }
          for (int64_t j = s; j < e; ++j) {
            const T* p = g.pts + 3 * j;
            cand.offer(sq_dist3(qx, qy, qz, p[0], p[1], p[2]), g.sidx[j]);
          }
        }
      }
    }
    // Everything not yet searched lies outside the block [c-r, c+r]; the sides that reach the
    // grid's edge have nothing beyond them. The faces below are interior (cells lie beyond them),
    // and a coordinate clamped into a boundary cell lies past that cell's outer face, so even
    // farther beyond any interior face: an unsearched point below the block on axis a has p[a]
    // below the face (up to the margin) whether it was binned or clamped, and |q[a] - p[a]|
    // bounds its distance whatever its other axes (clamping is per axis). A q outside the box on
    // axis a is clamped into that axis' boundary cell, so the block already reaches that edge,
    // and toward the other side q lies beyond the face: the gap is positive and still a bound.
    bool whole = true;
    double gmin = INFINITY;
    for (int a = 0; a < 3; ++a) {
      if (c[a] - r > 0) {
        whole = false;
        gmin = fmin(gmin, q[a] - (g.origin[a] + double(c[a] - r) * g.h + g.margin));
      }
      if (c[a] + r < g.dims[a] - 1) {
        whole = false;
        gmin = fmin(gmin, (g.origin[a] + double(c[a] + r + 1) * g.h - g.margin) - q[a]);
      }
    }
    if (whole) break;
    if (cand.cnt == k) {
      gmin = gmin > 0 ? gmin : 0;
      if (gmin * gmin * kBoundShrink - kBoundSlack<T> > double(cand.d[k - 1])) break;
    }
  }
  T* od = out_d + qi * int64_t(k);
  int64_t* oi = out_i + qi * int64_t(k);
  for (int j = 0; j < k; ++j) {
    od[j] = cand.d[j];
    oi[j] = cand.i[j];
  }
}

// ------------------------------------------------------------------------------ brute force

template <typename T>
__global__ void all_distances_kernel(const T* query, int64_t q0, int64_t rows, const T* p, int64_t n, T* keys,
                                     int64_t* vals) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= rows * n) return;
  const int64_t r = t / n, j = t - r * n;
  const T* q = query + 3 * (q0 + r);
  keys[t] = sq_dist3(q[0], q[1], q[2], p[3 * j], p[3 * j + 1], p[3 * j + 2]);
  vals[t] = j;
}

__global__ void segment_offsets_kernel(int64_t rows, int64_t n, int64_t* off) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r <= rows) off[r] = r * n;
}

template <typename T>
__global__ void take_first_k_kernel(const T* keys, const int64_t* vals, int64_t q0, int64_t rows, int64_t n,
                                    int64_t k, T* out_d, int64_t* out_i) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= rows * k) return;
  const int64_t r = t / k, j = t - r * k;
  out_d[(q0 + r) * k + j] = keys[r * n + j];
  out_i[(q0 + r) * k + j] = vals[r * n + j];
}

inline unsigned blocks_for(int64_t work) {
  return unsigned((work + kThreads - 1) / kThreads);
}

template <typename T>
cudaError_t brute_force_knn(const T* query, int64_t m, const T* points, int64_t n, int64_t k, T* d2,
                            int64_t* idx, cudaStream_t stream) {
  const size_t per_row = size_t(n) * 2 * (sizeof(T) + sizeof(int64_t));
  const int64_t rows_max = std::max<int64_t>(1, std::min<int64_t>(m, int64_t(kBruteChunkBytes / per_row)));
  const size_t items = size_t(rows_max) * size_t(n);
  T *keys = nullptr, *keys_out = nullptr;
  int64_t *vals = nullptr, *vals_out = nullptr, *off = nullptr;
  void* temp = nullptr;
  size_t temp_bytes = 0;
  cudaError_t err = cudaSuccess;
  auto run = [&]() -> cudaError_t {
    G3_TRY(temp_alloc(&keys, items * sizeof(T), stream));
    G3_TRY(temp_alloc(&keys_out, items * sizeof(T), stream));
    G3_TRY(temp_alloc(&vals, items * sizeof(int64_t), stream));
    G3_TRY(temp_alloc(&vals_out, items * sizeof(int64_t), stream));
    G3_TRY(temp_alloc(&off, size_t(rows_max + 1) * sizeof(int64_t), stream));
    G3_TRY(cub::DeviceSegmentedSort::StableSortPairs(nullptr, temp_bytes, keys, keys_out, vals, vals_out,
                                                     int64_t(items), rows_max, off, off + 1, stream));
    G3_TRY(temp_alloc(&temp, temp_bytes, stream));
    for (int64_t q0 = 0; q0 < m; q0 += rows_max) {
      const int64_t rows = std::min(rows_max, m - q0);
      all_distances_kernel<T><<<blocks_for(rows * n), kThreads, 0, stream>>>(query, q0, rows, points, n, keys, vals);
      G3_TRY(cudaGetLastError());
      segment_offsets_kernel<<<blocks_for(rows + 1), kThreads, 0, stream>>>(rows, n, off);
      G3_TRY(cudaGetLastError());
      size_t bytes = temp_bytes;
      G3_TRY(cub::DeviceSegmentedSort::StableSortPairs(temp, bytes, keys, keys_out, vals, vals_out,
                                                       rows * n, rows, off, off + 1, stream));
      take_first_k_kernel<T><<<blocks_for(rows * k), kThreads, 0, stream>>>(keys_out, vals_out, q0, rows, n, k,
                                                                           d2, idx);
      G3_TRY(cudaGetLastError());
    }
    return cudaSuccess;
  };
  err = run();
  for (void* ptr : {(void*)keys, (void*)keys_out, (void*)vals, (void*)vals_out, (void*)off, temp}) temp_free(ptr);
  return err;
}

// ------------------------------------------------------------------------------ launcher

template <typename T, int CAP>
cudaError_t launch_grid_search(const Grid<T>& g, const T* query, const int64_t* order, int64_t m, int64_t k,
                               T* d2, int64_t* idx, cudaStream_t stream) {
  grid_knn_kernel<T, CAP><<<blocks_for(m), kThreads, 0, stream>>>(g, query, order, m, int(k), d2, idx);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grid_knn(const T* query, int64_t m, const T* points, int64_t n, int64_t k, T* d2, int64_t* idx,
                     cudaStream_t stream) {
  // Bounding box: per-block partials, reduced on the host, and a strided sample of the points for
  // the robust box below (one small copy for both).
  const int parts = int(std::min<int64_t>(256, std::max<int64_t>(1, (n + kThreads - 1) / kThreads)));
  const int64_t samples = robust_box_samples(n);
  const size_t host_elems = size_t(parts) * 6 + size_t(samples) * 3;
  std::vector<T> host(host_elems);  // before the scratch: nothing to free if this throws
  T* partial = nullptr;
  G3_TRY(temp_alloc(&partial, host_elems * sizeof(T), stream));
  T* sample = partial + size_t(parts) * 6;
  bbox_partial_kernel<T><<<parts, kThreads, 0, stream>>>(points, n, partial);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    sample_points_kernel<T><<<blocks_for(samples), kThreads, 0, stream>>>(points, n, samples, sample);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess)
    err = cudaMemcpyAsync(host.data(), partial, host_elems * sizeof(T), cudaMemcpyDeviceToHost, stream);
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
  temp_free(partial);
  if (err != cudaSuccess) return err;
  double tlo[3], thi[3], temax = 0, tamax = 0;
  for (int a = 0; a < 3; ++a) {
    tlo[a] = double(host[a]);
    thi[a] = double(host[3 + a]);
    for (int b = 1; b < parts; ++b) {
      tlo[a] = std::min(tlo[a], double(host[6 * b + a]));
      thi[a] = std::max(thi[a], double(host[6 * b + 3 + a]));
    }
    temax = std::max(temax, thi[a] - tlo[a]);
    tamax = std::max(tamax, std::max(std::fabs(tlo[a]), std::fabs(thi[a])));
  }
  // Finite coordinates whose extent overflows a double leave no grid to build: brute force.
  if (!std::isfinite(temax) || !std::isfinite(tamax)) {
    return brute_force_knn(query, m, points, n, k, d2, idx, stream);
  }

  const T* sample_host = host.data() + size_t(parts) * 6;

  // Grid box: robust to a few stray points (common/robust_box.h). Points outside it go to the
  // boundary cells (cell_coord), which block_bound and the ring stop test treat as open.
  double lo[3], hi[3];
  robust_box(sample_host, samples, tlo, thi, lo, hi);

  // Cell edge: about two cells per point over the box volume (flat axes count as 1/1024 of
  // the largest extent), then enlarged until the cell count fits the budget.
  double ext[3], emax = 0, amax = 0;
  for (int a = 0; a < 3; ++a) {
    ext[a] = hi[a] - lo[a];
    emax = std::max(emax, ext[a]);
    amax = std::max(amax, std::max(std::fabs(lo[a]), std::fabs(hi[a])));
  }
  Grid<T> g;
  const int64_t max_cells = std::min<int64_t>(2 * n + 64, int64_t(1) << 31);
  if (emax <= 0) {
    g.h = 1.0;
  } else {
    // Relative volume (axes over emax): no underflow for clouds of tiny extent.
    double rel = 1;
    for (int a = 0; a < 3; ++a) rel *= std::max(ext[a] / emax, 1.0 / 1024);
    g.h = emax * std::cbrt(rel / double(2 * n));
    // A subnormal extent can still round h or 1/h out of range: one cell then.
    if (!(g.h > 0) || !std::isfinite(1.0 / g.h)) g.h = std::isfinite(1.0 / emax) ? emax : 1.0;
  }
  for (;;) {
    double cells = 1;
    for (int a = 0; a < 3; ++a) cells *= std::floor(ext[a] / g.h) + 1;
    if (cells <= double(max_cells)) break;
    g.h *= 1.25;
  }
  g.inv_h = 1.0 / g.h;
  g.cells = 1;
  for (int a = 0; a < 3; ++a) {
    g.origin[a] = lo[a];
    g.dims[a] = int64_t(std::floor(ext[a] * g.inv_h)) + 1;
    g.cells *= g.dims[a];
  }
  // The margin only has to cover the rounding of coordinates that were binned, not clamped: those
  // lie within a cell of the grid box, so the box's magnitudes (not the outliers') set it. Finite
  // faces are never used to bound a clamped coordinate (block_bound, ring stop test), and a
  // query's own magnitude enters only through q - face, rounded relative to the result and
  // covered by kBoundShrink. A margin from the true box would let one point at 1e12 wipe out all
  // pruning.
  g.margin = 1e-9 * (amax + emax + g.h);
  int end_bit = 1;
  while (end_bit < 32 && (int64_t(1) << end_bit) < g.cells) ++end_bit;

  uint32_t *keys = nullptr, *keys_sorted = nullptr, *qkeys = nullptr, *qkeys_sorted = nullptr;
  int64_t *vals = nullptr, *sidx = nullptr, *start = nullptr, *qvals = nullptr, *order = nullptr;
  T* spts = nullptr;
  void* temp = nullptr;
  auto run = [&]() -> cudaError_t {
    G3_TRY(temp_alloc(&keys, size_t(n) * sizeof(uint32_t), stream));
    G3_TRY(temp_alloc(&keys_sorted, size_t(n) * sizeof(uint32_t), stream));
    G3_TRY(temp_alloc(&vals, size_t(n) * sizeof(int64_t), stream));
    G3_TRY(temp_alloc(&sidx, size_t(n) * sizeof(int64_t), stream));
    G3_TRY(temp_alloc(&spts, size_t(n) * 3 * sizeof(T), stream));
    G3_TRY(temp_alloc(&start, size_t(g.cells + 1) * sizeof(int64_t), stream));
    G3_TRY(temp_alloc(&qkeys, size_t(m) * sizeof(uint32_t), stream));
    G3_TRY(temp_alloc(&qkeys_sorted, size_t(m) * sizeof(uint32_t), stream));
    G3_TRY(temp_alloc(&qvals, size_t(m) * sizeof(int64_t), stream));
    G3_TRY(temp_alloc(&order, size_t(m) * sizeof(int64_t), stream));
    size_t bytes_p = 0, bytes_q = 0;
    G3_TRY(cub::DeviceRadixSort::SortPairs(nullptr, bytes_p, keys, keys_sorted, vals, sidx, n, 0, end_bit, stream));
    G3_TRY(cub::DeviceRadixSort::SortPairs(nullptr, bytes_q, qkeys, qkeys_sorted, qvals, order, m, 0, end_bit,
                                           stream));
    const size_t temp_bytes = std::max(bytes_p, bytes_q);
    G3_TRY(temp_alloc(&temp, temp_bytes, stream));

    point_keys_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(g, points, n, keys, vals);
    G3_TRY(cudaGetLastError());
    size_t bytes = temp_bytes;
    G3_TRY(cub::DeviceRadixSort::SortPairs(temp, bytes, keys, keys_sorted, vals, sidx, n, 0, end_bit, stream));
    gather_points_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(points, sidx, n, spts);
    G3_TRY(cudaGetLastError());
    cell_start_kernel<<<blocks_for(g.cells + 1), kThreads, 0, stream>>>(keys_sorted, n, g.cells, start);
    G3_TRY(cudaGetLastError());

    point_keys_kernel<T><<<blocks_for(m), kThreads, 0, stream>>>(g, query, m, qkeys, qvals);
    G3_TRY(cudaGetLastError());
    bytes = temp_bytes;
    G3_TRY(cub::DeviceRadixSort::SortPairs(temp, bytes, qkeys, qkeys_sorted, qvals, order, m, 0, end_bit, stream));

    g.pts = spts;
    g.sidx = sidx;
    g.start = start;
    if (k <= 16) return launch_grid_search<T, 16>(g, query, order, m, k, d2, idx, stream);
    if (k <= 32) return launch_grid_search<T, 32>(g, query, order, m, k, d2, idx, stream);
    if (k <= 64) return launch_grid_search<T, 64>(g, query, order, m, k, d2, idx, stream);
    if (k <= 128) return launch_grid_search<T, 128>(g, query, order, m, k, d2, idx, stream);
    return launch_grid_search<T, 256>(g, query, order, m, k, d2, idx, stream);
  };
  err = run();
  for (void* ptr : {(void*)keys, (void*)keys_sorted, (void*)vals, (void*)sidx, (void*)spts, (void*)start,
                    (void*)qkeys, (void*)qkeys_sorted, (void*)qvals, (void*)order, temp})
    temp_free(ptr);
  return err;
}

}  // namespace

template <typename T>
cudaError_t knn_launch(const T* query, int64_t m, const T* points, int64_t n, int64_t k, T* d2, int64_t* idx,
                       cudaStream_t stream) {
  if (m <= 0) return cudaSuccess;
  if (n < 1 || k < 1 || k > n) return cudaErrorInvalidValue;
  if (k > kMaxThreadK) return brute_force_knn(query, m, points, n, k, d2, idx, stream);
  return grid_knn(query, m, points, n, k, d2, idx, stream);
}

template cudaError_t knn_launch<float>(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t*,
                                       cudaStream_t);
template cudaError_t knn_launch<double>(const double*, int64_t, const double*, int64_t, int64_t, double*,
                                        int64_t*, cudaStream_t);

}  // namespace cuda
}  // namespace g3
