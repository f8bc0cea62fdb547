// CUDA kernels of nn_search: fused distance tiles with a running per-query candidate list,
// then exact float64 re-ranking and certification (bounds in common/nn_search_bounds.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common/g3_macros.h"
#include "common/nn_search_bounds.h"
#include "cuda/nn_search_launch.h"

namespace g3 {
namespace cuda {
namespace {

constexpr int kQueryTile = 32;   // queries per block (4 per warp)
constexpr int kBankTile = 128;   // bank rows per shared-memory tile (4 per lane)
constexpr int kDimChunk = 16;    // dimensions staged per step
constexpr int kThreads = 256;
constexpr unsigned kFull = 0xffffffffu;
constexpr int64_t kNoIndex = INT64_MAX;

// Widened element type: float for float32/16/bf16 (exact), double for float64 so that the
// difference is formed before rounding to float32.
template <typename T> struct Wide { using type = float; };
template <> struct Wide<double> { using type = double; };

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ double to_double(T v) { return static_cast<double>(widen(v)); }

// Candidate lists live in registers: list position p is slot p / 32 of lane p % 32, sorted
// ascending by (approximate d2, index); unused positions hold (+inf, kNoIndex).
struct WarpList {
  float d[2];
  int64_t i[2];
};

__device__ __forceinline__ void list_at(const WarpList& l, int pos, float& d, int64_t& i) {
  const float ds = pos >= 32 ? l.d[1] : l.d[0];
  const int64_t is = pos >= 32 ? l.i[1] : l.i[0];
  d = __shfl_sync(kFull, ds, pos & 31);
  i = __shfl_sync(kFull, static_cast<long long>(is), pos & 31);
}

// Warp-wide insertion of (nd, ni) into the sorted list (the caller checked that it beats the
// entry at position m-1).
__device__ __forceinline__ void list_insert(WarpList& l, int lane, float nd, int64_t ni) {
  const bool b0 = better_min(l.d[0], l.i[0], nd, ni);
  const bool b1 = better_min(l.d[1], l.i[1], nd, ni);
  const int pos = __popc(__ballot_sync(kFull, b0)) + __popc(__ballot_sync(kFull, b1));
  const float up0d = __shfl_up_sync(kFull, l.d[0], 1);
  const int64_t up0i = __shfl_up_sync(kFull, static_cast<long long>(l.i[0]), 1);
  const float up1d = __shfl_up_sync(kFull, l.d[1], 1);
  const int64_t up1i = __shfl_up_sync(kFull, static_cast<long long>(l.i[1]), 1);
  const float last0d = __shfl_sync(kFull, l.d[0], 31);
  const int64_t last0i = __shfl_sync(kFull, static_cast<long long>(l.i[0]), 31);
  const int p0 = lane, p1 = lane + 32;
  if (p0 == pos) {
    l.d[0] = nd;
    l.i[0] = ni;
  } else if (p0 > pos) {
    l.d[0] = up0d;
    l.i[0] = up0i;
  }
  if (p1 == pos) {
    l.d[1] = nd;
    l.i[1] = ni;
  } else if (p1 > pos) {
    l.d[1] = lane == 0 ? last0d : up1d;
    l.i[1] = lane == 0 ? last0i : up1i;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
nn_candidates_kernel(const T* __restrict__ queries, const T* __restrict__ bank, int64_t q_rows,
                     int64_t bank_rows, int64_t dims, int m, int64_t* __restrict__ cand_idx,
                     float* __restrict__ cand_worst) {
  using W = typename Wide<T>::type;
  __shared__ W sq[kDimChunk][kQueryTile + 1];
  __shared__ W sb[kDimChunk][kBankTile + 1];
  __shared__ float tile[kQueryTile][kBankTile + 1];

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;  // owns queries warp*4 .. warp*4+3
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kQueryTile;

  WarpList lists[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    lists[i].d[0] = lists[i].d[1] = INFINITY;
    lists[i].i[0] = lists[i].i[1] = kNoIndex;
  }

  for (int64_t b0 = 0; b0 < bank_rows; b0 += kBankTile) {
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][c] = 0.0f;

    for (int64_t d0 = 0; d0 < dims; d0 += kDimChunk) {
      for (int e = tid; e < kQueryTile * kDimChunk; e += kThreads) {
        const int r = e / kDimChunk, dd = e % kDimChunk;
        const int64_t gq = q0 + r, gd = d0 + dd;
        sq[dd][r] = (gq < q_rows && gd < dims) ? static_cast<W>(widen(queries[gq * dims + gd])) : W(0);
      }
      for (int e = tid; e < kBankTile * kDimChunk; e += kThreads) {
        const int r = e / kDimChunk, dd = e % kDimChunk;
        const int64_t gb = b0 + r, gd = d0 + dd;
        sb[dd][r] = (gb < bank_rows && gd < dims) ? static_cast<W>(widen(bank[gb * dims + gd])) : W(0);
      }
      __syncthreads();
#pragma unroll
      for (int dd = 0; dd < kDimChunk; ++dd) {
        W qv[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) qv[i] = sq[dd][warp * 4 + i];
#pragma unroll
        for (int c = 0; c < 4; ++c) bv[c] = sb[dd][lane + 32 * c];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const float diff = static_cast<float>(qv[i] - bv[c]);
            acc[i][c] = __fmaf_rn(diff, diff, acc[i][c]);
          }
      }
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int c = 0; c < 4; ++c) tile[warp * 4 + i][lane + 32 * c] = acc[i][c];
    __syncthreads();

    // Merge the tile into the four lists of this warp; lanes scan columns in index order.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      for (int r = 0; r < kBankTile / 32; ++r) {
        const int col = r * 32 + lane;
        const int64_t j = b0 + col;
        const float d = tile[warp * 4 + i][col];
        float wd;
        int64_t wi;
        list_at(lists[i], m - 1, wd, wi);
        unsigned pass = __ballot_sync(kFull, j < bank_rows && better_min(d, j, wd, wi));
        while (pass) {
          const int src = __ffs(pass) - 1;
          pass &= pass - 1;
          const float nd = __shfl_sync(kFull, d, src);
          const int64_t nj = __shfl_sync(kFull, static_cast<long long>(j), src);
          list_at(lists[i], m - 1, wd, wi);
          if (better_min(nd, nj, wd, wi)) list_insert(lists[i], lane, nd, nj);
        }
      }
    }
    __syncthreads();  // tile, sq and sb are rewritten next
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t gq = q0 + warp * 4 + i;
    float wd;
    int64_t wi;
    list_at(lists[i], m - 1, wd, wi);
    if (gq < q_rows) {
      if (lane < m) cand_idx[gq * m + lane] = lists[i].i[0];
      if (lane + 32 < m) cand_idx[gq * m + lane + 32] = lists[i].i[1];
      if (lane == 0) cand_worst[gq] = wd;
    }
  }
}

constexpr int kRerankWarps = 4;

template <typename T>
__global__ void __launch_bounds__(kRerankWarps * 32)
nn_rerank_kernel(const T* __restrict__ queries, const T* __restrict__ bank, int64_t q_rows,
                 int64_t bank_rows, int64_t dims, int m, int k, const int64_t* __restrict__ cand_idx,
                 const float* __restrict__ cand_worst, float* __restrict__ dist,
                 int64_t* __restrict__ idx, uint8_t* __restrict__ failed) {
  __shared__ double sd[kRerankWarps][kNnMaxCandidates];
  __shared__ int64_t si[kRerankWarps][kNnMaxCandidates];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t gq = static_cast<int64_t>(blockIdx.x) * kRerankWarps + warp;
  if (gq >= q_rows) return;  // whole warp: no block-level barrier below
  const T* q = queries + gq * dims;

  // A slot the candidate pass never filled (every distance NaN) holds kNoIndex: no bank row to
  // read. Warp-uniform (every lane reads the same j); the row is then left to the fallback.
  bool unfilled = false;
  for (int c = 0; c < m; ++c) {
    const int64_t j = cand_idx[gq * m + c];
    const bool valid = j >= 0 && j < bank_rows;
    unfilled |= !valid;
    double s = valid ? 0.0 : INFINITY;
    for (int64_t d = lane; valid && d < dims; d += 32) {
      const double diff = to_double(q[d]) - to_double(bank[j * dims + d]);
      s += diff * diff;
    }
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(kFull, s, off);
    if (lane == 0) {
      sd[warp][c] = s;
      si[warp][c] = j;
    }
  }
  __syncwarp();
  if (lane == 0) {
    // Insertion sort by (exact d2, index): m <= 64.
    for (int a = 1; a < m; ++a) {
      const double vd = sd[warp][a];
      const int64_t vi = si[warp][a];
      int p = a - 1;
      while (p >= 0 && better_min(vd, vi, sd[warp][p], si[warp][p])) {
        sd[warp][p + 1] = sd[warp][p];
        si[warp][p + 1] = si[warp][p];
        --p;
      }
      sd[warp][p + 1] = vd;
      si[warp][p + 1] = vi;
    }
    const float worst = cand_worst[gq];
    const bool ok = !unfilled && (m == bank_rows ||
                                  (isfinite(worst) && direct_d2_lower_bound(worst, dims) > sd[warp][k - 1]));
    failed[gq] = ok ? 0 : 1;
  }
  __syncwarp();
  for (int c = lane; c < k; c += 32) {
    dist[gq * k + c] = static_cast<float>(sqrt(sd[warp][c]));
    idx[gq * k + c] = si[warp][c];
  }
}

template <typename T>
cudaError_t launch_typed(const T* queries, const T* bank, int64_t q_rows, int64_t bank_rows,
                         int64_t dims, int64_t k, int64_t m, int64_t* cand_idx, float* cand_worst,
                         float* dist, int64_t* idx, uint8_t* failed, cudaStream_t stream) {
  const unsigned grid1 = static_cast<unsigned>((q_rows + kQueryTile - 1) / kQueryTile);
  nn_candidates_kernel<T><<<grid1, kThreads, 0, stream>>>(queries, bank, q_rows, bank_rows, dims,
                                                           static_cast<int>(m), cand_idx, cand_worst);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const unsigned grid2 = static_cast<unsigned>((q_rows + kRerankWarps - 1) / kRerankWarps);
  nn_rerank_kernel<T><<<grid2, kRerankWarps * 32, 0, stream>>>(
      queries, bank, q_rows, bank_rows, dims, static_cast<int>(m), static_cast<int>(k), cand_idx,
      cand_worst, dist, idx, failed);
  return cudaGetLastError();
}

}  // namespace

cudaError_t nn_search_launch(NnDtype dtype, const void* queries, const void* bank, int64_t q_rows,
                             int64_t bank_rows, int64_t dims, int64_t k, int64_t m,
                             int64_t* cand_idx, float* cand_worst, float* dist, int64_t* idx,
                             uint8_t* failed, cudaStream_t stream) {
  if (q_rows == 0) return cudaSuccess;
  if (m < k || m > kNnMaxCandidates || m > bank_rows) return cudaErrorInvalidValue;
  switch (dtype) {
    case NnDtype::kFloat32:
      return launch_typed(static_cast<const float*>(queries), static_cast<const float*>(bank), q_rows,
                          bank_rows, dims, k, m, cand_idx, cand_worst, dist, idx, failed, stream);
    case NnDtype::kFloat64:
      return launch_typed(static_cast<const double*>(queries), static_cast<const double*>(bank),
                          q_rows, bank_rows, dims, k, m, cand_idx, cand_worst, dist, idx, failed, stream);
    case NnDtype::kFloat16:
      return launch_typed(static_cast<const __half*>(queries), static_cast<const __half*>(bank),
                          q_rows, bank_rows, dims, k, m, cand_idx, cand_worst, dist, idx, failed, stream);
    case NnDtype::kBFloat16:
      return launch_typed(static_cast<const __nv_bfloat16*>(queries),
                          static_cast<const __nv_bfloat16*>(bank), q_rows, bank_rows, dims, k, m,
                          cand_idx, cand_worst, dist, idx, failed, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace g3
