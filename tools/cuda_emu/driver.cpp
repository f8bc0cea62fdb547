// C API over the emulated launchers, for tools/cuda_emu/runner.py (ctypes). Each entry point
// does what the torch glue in csrc/cuda/*_cuda.cpp does around the launcher, and no more:
// plans and workspace sizes, output and scratch buffers, the padding and defaults the glue
// writes itself. Argument validation stays with the glue and the tests' valid inputs.
//
// Every buffer is allocated at its exact size with malloc and filled with garbage, so ASan
// reports a kernel that reads or writes past it and a result never depends on zeroed memory.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/nn_search_bounds.h"
#include "cuda/fps_launch.h"
#include "cuda/geometry_kernel.h"
#include "cuda/knn_launch.h"
#include "cuda/nn_search_launch.h"
#include "cuda/torch_bridge.h"

namespace {

long live_temp = 0;  // temp_alloc blocks not yet returned

void* garbage_alloc(size_t bytes) {
  void* p = std::malloc(bytes);
  if (p) std::memset(p, 0xA5, bytes);
  return p;
}

// An exact-size buffer of n T's (at least one byte, as torch's allocator never returns null).
template <typename T>
struct Buf {
  T* p;
  explicit Buf(int64_t n) : p(static_cast<T*>(garbage_alloc(std::max<size_t>(1, size_t(n) * sizeof(T))))) {}
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

}  // namespace

// torch_bridge.h, on malloc instead of torch's caching allocator: ASan sees every scratch
// buffer's bounds and lifetime.
namespace g3 {
namespace cuda {

cudaError_t temp_alloc(void** ptr, size_t bytes, cudaStream_t) {
  *ptr = garbage_alloc(std::max<size_t>(bytes, 1));
  if (!*ptr) return cudaErrorMemoryAllocation;
  ++live_temp;
  return cudaSuccess;
}

void temp_free(void* ptr) {
  if (!ptr) return;
  std::free(ptr);
  --live_temp;
}

}  // namespace cuda
}  // namespace g3

using namespace g3::cuda;

extern "C" {

long emu_live_temp() { return live_temp; }

// The grid kNN's distance evaluations since the last call (build.py's PROBES), then reset.
int64_t emu_knn_dist_evals_take() {
  const int64_t n = emu_knn_dist_evals;
  emu_knn_dist_evals = 0;
  return n;
}

// fps_cuda.cpp. kind_out / blocks_out: the plan, so tests can check which mode ran.
int emu_fps(int elem, const void* points, const int64_t* lengths, const int64_t* seeds, int64_t B, int64_t N,
            int64_t D, int64_t S, int64_t n_samples, int64_t* out, int* kind_out, int64_t* blocks_out) {
  FpsPlan plan;
  cudaError_t err = fps_plan(0, B, N, D, elem, lengths, &plan);
  if (err != cudaSuccess) return err;
  *kind_out = plan.kind;
  *blocks_out = plan.blocks;
  Buf<unsigned char> workspace(plan.workspace_bytes);
  if (elem == 4) {
    err = fps_run<float>(plan, static_cast<const float*>(points), lengths, seeds, B, N, D, S, n_samples, out,
                         workspace.p, nullptr);
  } else {
    err = fps_run<double>(plan, static_cast<const double*>(points), lengths, seeds, B, N, D, S, n_samples, out,
                          workspace.p, nullptr);
  }
  if (err == cudaSuccess) err = cudaGetLastError();
  return err;
}

// knn_cuda.cpp: one launch per cloud, padding query rows (inf, -1).
int emu_knn(int elem, const void* query, const void* points, const int64_t* query_lengths,
            const int64_t* point_lengths, int64_t B, int64_t M, int64_t N, int64_t k, void* dist, int64_t* idx) {
  for (int64_t b = 0; b < B; ++b) {
    const int64_t nq = query_lengths[b], np = point_lengths[b];
    if (nq > 0) {
      const cudaError_t err =
          elem == 4 ? knn_launch<float>(static_cast<const float*>(query) + b * M * 3, nq,
                                        static_cast<const float*>(points) + b * N * 3, np, k,
                                        static_cast<float*>(dist) + b * M * k, idx + b * M * k, nullptr)
                    : knn_launch<double>(static_cast<const double*>(query) + b * M * 3, nq,
                                         static_cast<const double*>(points) + b * N * 3, np, k,
                                         static_cast<double*>(dist) + b * M * k, idx + b * M * k, nullptr);
      if (err != cudaSuccess) return err;
    }
    for (int64_t j = b * M * k + nq * k; j < (b + 1) * M * k; ++j) {
      if (elem == 4) static_cast<float*>(dist)[j] = INFINITY;
      else static_cast<double*>(dist)[j] = INFINITY;
      idx[j] = -1;
    }
  }
  return cudaSuccess;
}

}  // extern "C"

namespace {

// geometry_cuda.cpp's strict-radius convention: keep d2 < radius^2.
double hybrid_radius2(double radius) {
  if (!(radius > 0.0)) return -1.0;
  const double r2 = radius * radius;
  return r2 > 0.0 ? std::nextafter(r2, 0.0) : 0.0;
}

struct Lists {
  int64_t k;
  Buf<int32_t> idx;     // (m,k)
  Buf<int32_t> counts;  // (m,)
  Lists(int64_t m, int64_t k_) : k(k_), idx(m * k_), counts(m) {}
};

cudaError_t neighbours(const double* points, int64_t n, const int64_t* ids, int64_t m, int64_t max_nn,
                       double radius, Lists& l) {
  return hybrid_neighbours(points, n, ids, m, max_nn, hybrid_radius2(radius), l.idx.p, l.counts.p, nullptr);
}

}  // namespace

extern "C" {

int emu_normals(const double* points, int64_t n, double radius, int64_t max_nn, double* out) {
  if (n == 0) return cudaSuccess;
  Lists l(n, std::min(max_nn, n));
  cudaError_t err = neighbours(points, n, nullptr, n, max_nn, radius, l);
  if (err != cudaSuccess) return err;
  return normals_from_lists(points, n, l.idx.p, l.counts.p, l.k, out, nullptr);
}

// query_ids: null for every point. out (nq,33) is zeroed here, as the glue's at::zeros.
int emu_fpfh(const double* points, const double* normals, int64_t n, const int64_t* query_ids, int64_t nq,
             double radius, int64_t max_nn, double* out) {
  std::fill(out, out + nq * 33, 0.0);
  if (n == 0 || nq == 0) return cudaSuccess;
  const int64_t k = std::min(max_nn, n);
  Buf<int32_t> spfh_counts(n * 33);
  Buf<double> spfh_incr(n);
  std::fill(spfh_counts.p, spfh_counts.p + n * 33, 0);
  std::fill(spfh_incr.p, spfh_incr.p + n, 0.0);
  Lists ql(nq, k);
  cudaError_t err = neighbours(points, n, query_ids, nq, max_nn, radius, ql);
  if (err != cudaSuccess) return err;
  if (!query_ids) {
    err = spfh_from_lists(points, normals, nullptr, n, ql.idx.p, ql.counts.p, k, spfh_counts.p, spfh_incr.p,
                          nullptr);
  } else {
    // SPFH of the queries and their neighbours only (at::nonzero of the flags, as the glue).
    Buf<uint8_t> flags(n);
    std::fill(flags.p, flags.p + n, 0);
    err = mark_neighbourhoods(query_ids, nq, ql.idx.p, ql.counts.p, k, flags.p, nullptr);
    if (err != cudaSuccess) return err;
    const int64_t nneed = std::count(flags.p, flags.p + n, 1);
    Buf<int64_t> need(nneed);
    for (int64_t i = 0, j = 0; i < n; ++i) {
      if (flags.p[i]) need.p[j++] = i;
    }
    Lists nl(nneed, k);
    err = neighbours(points, n, need.p, nneed, max_nn, radius, nl);
    if (err != cudaSuccess) return err;
    err = spfh_from_lists(points, normals, need.p, nneed, nl.idx.p, nl.counts.p, k, spfh_counts.p, spfh_incr.p,
                          nullptr);
  }
  if (err != cudaSuccess) return err;
  return fpfh_from_lists(points, query_ids, nq, ql.idx.p, ql.counts.p, k, spfh_counts.p, spfh_incr.p, out,
                         nullptr);
}

// out (n,) is zeroed here, as the glue's at::zeros; elem 4: float features, 8: double.
int emu_fpfh_variation(const double* points, int64_t n, const void* features, int elem, int64_t dim, int64_t k,
                       double* out) {
  std::fill(out, out + n, 0.0);
  const int64_t kk = std::min<int64_t>(k, n - 1);
  if (n <= 1 || kk < 1) return cudaSuccess;
  return elem == 4
             ? fpfh_variation_launch<float>(points, n, static_cast<const float*>(features), dim, kk, out, nullptr)
             : fpfh_variation_launch<double>(points, n, static_cast<const double*>(features), dim, kk, out, nullptr);
}

// nn_search_cuda.cpp's choice of the candidate count m. Above kNnMaxCandidates the glue
// brute-forces every row without the kernels.
int64_t emu_nn_candidate_count(int64_t k, int64_t bank_rows) { return g3::nn_candidate_count(k, bank_rows); }

// nn_search_cuda.cpp's kernel part, m from emu_nn_candidate_count. cand_idx (Q,m), cand_worst
// (Q,): the candidate pass's lists, returned for the tests. failed (Q,): rows the glue would
// brute-force.
int emu_nn_search(int dtype, const void* queries, const void* bank, int64_t Q, int64_t bank_rows, int64_t dims,
                  int64_t k, int64_t m, int64_t* cand_idx, float* cand_worst, float* dist, int64_t* idx,
                  uint8_t* failed) {
  return nn_search_launch(static_cast<NnDtype>(dtype), queries, bank, Q, bank_rows, dims, k, m, cand_idx,
                          cand_worst, dist, idx, failed, nullptr);
}

}  // extern "C"
