// Exact farthest point sampling on CUDA: one persistent cooperative kernel for the whole
// batch. Every cloud gets a share of the grid's blocks (a million-point cloud uses all SMs).
// Per sample each block updates its points' distances to the newest pick, reduces its own
// (distance, lowest index) maximum and writes it to a double-buffered candidate array; after
// one grid-wide sync every block of the cloud reduces those candidates itself and so knows
// the next pick without another sync. Same arithmetic as the CPU kernel (fps_math.h,
// --fmad=false), ties to the lowest index: both backends return the same indices.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "common/fps_math.h"
#include "cuda/fps_launch.h"

namespace g3 {
namespace cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxBlocksPerSm = 2;  // more blocks only make the grid-wide sync dearer
constexpr int kStepPointsPerBlock = kThreads * 8;

template <typename T>
struct Params {
  const T* points;         // (B,N,D)
  const int64_t* lengths;  // (B,)
  const int64_t* seeds;    // (B,S)
  int64_t* out;            // (B,n_samples)
  T* cand_v;               // (2, blocks)
  int64_t* cand_i;         // (2, blocks)
  const int64_t* block_start;  // (B+1)
  T* dist;                 // (B,N), global-memory modes only
  int64_t* current;        // (B,), step mode only: the latest pick
  int64_t B, N, D, S, n_samples;
};

constexpr int64_t kNoIndex = INT64_MAX;  // loses every tie

template <typename T>
__device__ __forceinline__ T pos_inf();
template <>
__device__ __forceinline__ float pos_inf<float>() {
  return __int_as_float(0x7f800000);
}
template <>
__device__ __forceinline__ double pos_inf<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

template <typename T>
__device__ __forceinline__ void keep_better(T& v, int64_t& i, T ov, int64_t oi) {
  if (g3::better_max(ov, oi, v, i)) {
    v = ov;
    i = oi;
  }
}

// Warp-wide arg-max (value, lowest index) into lane 0.
template <typename T>
__device__ __forceinline__ void warp_argmax(T& v, int64_t& i) {
  for (int off = 16; off > 0; off >>= 1) {
    keep_better(v, i, __shfl_down_sync(0xffffffffu, v, off), __shfl_down_sync(0xffffffffu, i, off));
  }
}

// Block-wide arg-max (value, lowest index); every thread gets the result.
template <typename T>
__device__ __forceinline__ void block_argmax(T& v, int64_t& i) {
  __shared__ T sv[kWarps + 1];
  __shared__ int64_t si[kWarps + 1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_argmax(v, i);
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? sv[lane] : -pos_inf<T>();
    i = lane < kWarps ? si[lane] : kNoIndex;
    warp_argmax(v, i);
    if (lane == 0) {
      sv[kWarps] = v;
      si[kWarps] = i;
    }
  }
  __syncthreads();
  v = sv[kWarps];
  i = si[kWarps];
}

__device__ __forceinline__ int64_t find_cloud(const int64_t* block_start, int64_t B, int64_t blk) {
  int64_t lo = 0, hi = B - 1;  // last b with block_start[b] <= blk
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (block_start[mid] <= blk) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Reduces the candidates that cloud b's blocks wrote to buffer `buf`; L2 loads (__ldcg):
// other SMs wrote them, this SM's L1 may hold an older iteration's line.
template <typename T>
__device__ __forceinline__ int64_t reduce_candidates(const Params<T>& p, int buf, int64_t b0,
                                                     int64_t b1, int64_t total_blocks) {
  T v = -pos_inf<T>();
  int64_t i = kNoIndex;
  for (int64_t k = b0 + threadIdx.x; k < b1; k += kThreads) {
    keep_better(v, i, __ldcg(p.cand_v + buf * total_blocks + k), __ldcg(p.cand_i + buf * total_blocks + k));
  }
  block_argmax(v, i);
  return i;
}

// Squared distance of a D-dim row to another, in dimension order (DIM > 0: fixed at compile time).
template <typename T, int DIM>
__device__ __forceinline__ T row_dist(const T* a, const T* s, int64_t D) {
  if constexpr (DIM == 3) {
    return g3::sq_dist3(a[0], a[1], a[2], s[0], s[1], s[2]);
  } else {
    return g3::fps::sq_dist_rows(a, s, D);
  }
}

// Cooperative kernel. PPT > 0: D == 3, PPT points per thread in registers. PPT == 0: points
// and distances in global memory, DIM 3 or 0 (any D).
template <typename T, int PPT, int DIM>
__global__ void __launch_bounds__(kThreads, (PPT > 0 && sizeof(T) == 4) ? kMaxBlocksPerSm : 1)
fps_coop_kernel(Params<T> p) {
  cg::grid_group grid = cg::this_grid();
  const int64_t total_blocks = gridDim.x;
  const int64_t b = find_cloud(p.block_start, p.B, blockIdx.x);
  const int64_t b0 = p.block_start[b], b1 = p.block_start[b + 1];
  const int64_t L = p.lengths[b];
  const int64_t chunk = (L + (b1 - b0) - 1) / (b1 - b0);
  const int64_t begin = min(L, (static_cast<int64_t>(blockIdx.x) - b0) * chunk);
  const int64_t end = min(L, begin + chunk);
  const T* cloud = p.points + b * p.N * p.D;
  T* dist = p.dist ? p.dist + b * p.N : nullptr;

  T px[PPT > 0 ? PPT : 1], py[PPT > 0 ? PPT : 1], pz[PPT > 0 ? PPT : 1], pd[PPT > 0 ? PPT : 1];
  if constexpr (PPT > 0) {
#pragma unroll
    for (int k = 0; k < PPT; ++k) {
      const int64_t i = begin + threadIdx.x + static_cast<int64_t>(k) * kThreads;
      const bool valid = i < end;
      px[k] = valid ? cloud[3 * i] : T(0);
      py[k] = valid ? cloud[3 * i + 1] : T(0);
      pz[k] = valid ? cloud[3 * i + 2] : T(0);
      pd[k] = pos_inf<T>();
    }
  }

  int64_t cur = 0;
  for (int64_t m = 0; m < p.n_samples; ++m) {
    if (m < p.S) {
      cur = p.seeds[b * p.S + m];
    } else {
      cur = reduce_candidates(p, static_cast<int>((m - 1) & 1), b0, b1, total_blocks);
    }
    if (blockIdx.x == b0 && threadIdx.x == 0) p.out[b * p.n_samples + m] = cur;
    if (m + 1 == p.n_samples) break;

    const T* s = cloud + cur * p.D;
    T best = -pos_inf<T>();
    int64_t best_i = kNoIndex;
    if constexpr (PPT > 0) {
      const T sx = s[0], sy = s[1], sz = s[2];
#pragma unroll
      for (int k = 0; k < PPT; ++k) {
        const int64_t i = begin + threadIdx.x + static_cast<int64_t>(k) * kThreads;
        if (i < end) {
          const T d = g3::sq_dist3(px[k], py[k], pz[k], sx, sy, sz);
          T v = d < pd[k] ? d : pd[k];
          if (i == cur) v = g3::fps::chosen_mark<T>();
          pd[k] = v;
          keep_better(best, best_i, v, i);
        }
      }
    } else {
      for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
        const T d = row_dist<T, DIM>(cloud + i * p.D, s, p.D);
        const T old = m == 0 ? pos_inf<T>() : dist[i];
        T v = d < old ? d : old;
        if (i == cur) v = g3::fps::chosen_mark<T>();
        dist[i] = v;
        keep_better(best, best_i, v, i);
      }
    }
    if (m + 1 < p.S) continue;  // the next pick is a seed: no selection, no sync

    block_argmax(best, best_i);
    if (threadIdx.x == 0) {
      const int buf = static_cast<int>(m & 1);
      __stcg(p.cand_v + buf * total_blocks + blockIdx.x, best);
      __stcg(p.cand_i + buf * total_blocks + blockIdx.x, best_i);
    }
    grid.sync();
  }
}

// Step mode, launch 1 of 2 per sample: update with pick m (a seed or p.current[b]) and write
// each block's candidate to buffer 0.
template <typename T, int DIM>
__global__ void __launch_bounds__(kThreads) fps_step_update_kernel(Params<T> p, int64_t m) {
  const int64_t b = find_cloud(p.block_start, p.B, blockIdx.x);
  const int64_t b0 = p.block_start[b], b1 = p.block_start[b + 1];
  const int64_t L = p.lengths[b];
  const int64_t chunk = (L + (b1 - b0) - 1) / (b1 - b0);
  const int64_t begin = min(L, (static_cast<int64_t>(blockIdx.x) - b0) * chunk);
  const int64_t end = min(L, begin + chunk);
  const T* cloud = p.points + b * p.N * p.D;
  T* dist = p.dist + b * p.N;
  const int64_t cur = m < p.S ? p.seeds[b * p.S + m] : p.current[b];
  const T* s = cloud + cur * p.D;
  T best = -pos_inf<T>();
  int64_t best_i = kNoIndex;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const T d = row_dist<T, DIM>(cloud + i * p.D, s, p.D);
    const T old = m == 0 ? pos_inf<T>() : dist[i];
    T v = d < old ? d : old;
    if (i == cur) v = g3::fps::chosen_mark<T>();
    dist[i] = v;
    keep_better(best, best_i, v, i);
  }
  block_argmax(best, best_i);
  if (threadIdx.x == 0) {
    p.cand_v[blockIdx.x] = best;
    p.cand_i[blockIdx.x] = best_i;
  }
}

// Step mode, launch 2 of 2: one block per cloud picks sample m from the candidates.
template <typename T>
__global__ void __launch_bounds__(kThreads) fps_step_pick_kernel(Params<T> p, int64_t m) {
  const int64_t b = blockIdx.x;
  T v = -pos_inf<T>();
  int64_t i = kNoIndex;
  for (int64_t k = p.block_start[b] + threadIdx.x; k < p.block_start[b + 1]; k += kThreads) {
    keep_better(v, i, p.cand_v[k], p.cand_i[k]);
  }
  block_argmax(v, i);
  if (threadIdx.x == 0) {
    p.current[b] = i;
    p.out[b * p.n_samples + m] = i;
  }
}

template <typename T>
const void* coop_kernel(FpsPlan::Kind kind, int ppt, int64_t D) {
  if (kind == FpsPlan::kCoopRegisters) {
    return ppt == 2 ? reinterpret_cast<const void*>(&fps_coop_kernel<T, 2, 3>)
                    : reinterpret_cast<const void*>(&fps_coop_kernel<T, 8, 3>);
  }
  return D == 3 ? reinterpret_cast<const void*>(&fps_coop_kernel<T, 0, 3>)
                : reinterpret_cast<const void*>(&fps_coop_kernel<T, 0, 0>);
}

// Gives each cloud at least `need[b]` blocks and spreads the rest of `grid` in proportion to
// the lengths. Returns false when the needs alone exceed the grid.
bool partition_blocks(int64_t B, const int64_t* lengths, int64_t grid, int64_t per_block_cap,
                      std::vector<int64_t>* block_start) {
  std::vector<int64_t> need(B);
  int64_t needed = 0, total = 0;
  for (int64_t b = 0; b < B; ++b) {
    need[b] = std::max<int64_t>(1, (lengths[b] + per_block_cap - 1) / per_block_cap);
    needed += need[b];
    total += lengths[b];
  }
  if (needed > grid) return false;
  const int64_t extra = grid - needed;
  block_start->assign(B + 1, 0);
  for (int64_t b = 0; b < B; ++b) {
    // extra * lengths[b] < 2^63: extra is at most a few thousand blocks.
    const int64_t more = static_cast<int64_t>(
        static_cast<double>(extra) * static_cast<double>(lengths[b]) / static_cast<double>(total));
    const int64_t blocks = std::min<int64_t>(need[b] + std::max<int64_t>(0, more),
                                             std::max<int64_t>(need[b], lengths[b]));
    (*block_start)[b + 1] = (*block_start)[b] + blocks;
  }
  return (*block_start)[B] <= grid;
}

template <typename T>
cudaError_t plan_typed(int device, int64_t B, int64_t N, int64_t D, const int64_t* lengths,
                       FpsPlan* plan) {
  int sms = 0, coop = 0;
  cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device);
  if (err != cudaSuccess) return err;

  bool planned = false;
  if (coop) {
    struct Try {
      FpsPlan::Kind kind;
      int ppt;
    };
    const Try tries[] = {{FpsPlan::kCoopRegisters, 2}, {FpsPlan::kCoopRegisters, 8},
                         {FpsPlan::kCoopGlobal, 0}};
    for (const Try& t : tries) {
      if (t.kind == FpsPlan::kCoopRegisters && D != 3) continue;
      int occ = 0;
      err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, coop_kernel<T>(t.kind, t.ppt, D),
                                                          kThreads, 0);
      if (err != cudaSuccess) return err;
      const int64_t grid = static_cast<int64_t>(std::min(occ, kMaxBlocksPerSm)) * sms;
      if (grid < 1) continue;
      const int64_t cap = t.kind == FpsPlan::kCoopRegisters ? int64_t{kThreads} * t.ppt
                                                            : std::numeric_limits<int64_t>::max() / 2;
      if (partition_blocks(B, lengths, grid, cap, &plan->block_start)) {
        plan->kind = t.kind;
        plan->points_per_thread = t.ppt;
        planned = true;
        break;
      }
    }
  }
  if (!planned) {
    plan->kind = FpsPlan::kSteps;
    plan->points_per_thread = 0;
    plan->block_start.assign(B + 1, 0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t blocks = std::max<int64_t>(1, (lengths[b] + kStepPointsPerBlock - 1) / kStepPointsPerBlock);
      plan->block_start[b + 1] = plan->block_start[b] + blocks;
    }
  }
  plan->blocks = plan->block_start[B];
  const auto align = [](int64_t x) { return (x + 15) / 16 * 16; };
  int64_t bytes = align(2 * plan->blocks * static_cast<int64_t>(sizeof(T)));  // cand_v
  bytes += align(2 * plan->blocks * 8);                                       // cand_i
  bytes += align((B + 1) * 8);                                                // block_start
  if (plan->kind != FpsPlan::kCoopRegisters) bytes += align(B * N * static_cast<int64_t>(sizeof(T)));
  if (plan->kind == FpsPlan::kSteps) bytes += align(B * 8);                   // current
  plan->workspace_bytes = bytes;
  return cudaSuccess;
}

}  // namespace

cudaError_t fps_plan(int device, int64_t B, int64_t N, int64_t D, int elem_size,
                     const int64_t* lengths_host, FpsPlan* plan) {
  return elem_size == 4 ? plan_typed<float>(device, B, N, D, lengths_host, plan)
                        : plan_typed<double>(device, B, N, D, lengths_host, plan);
}

template <typename T>
cudaError_t fps_run(const FpsPlan& plan, const T* points, const int64_t* lengths,
                    const int64_t* seeds, int64_t B, int64_t N, int64_t D, int64_t S,
                    int64_t n_samples, int64_t* out, void* workspace, cudaStream_t stream) {
  const auto align = [](int64_t x) { return (x + 15) / 16 * 16; };
  char* w = static_cast<char*>(workspace);
  Params<T> p{};
  p.points = points;
  p.lengths = lengths;
  p.seeds = seeds;
  p.out = out;
  p.B = B;
  p.N = N;
  p.D = D;
  p.S = S;
  p.n_samples = n_samples;
  p.cand_v = reinterpret_cast<T*>(w);
  w += align(2 * plan.blocks * static_cast<int64_t>(sizeof(T)));
  p.cand_i = reinterpret_cast<int64_t*>(w);
  w += align(2 * plan.blocks * 8);
  int64_t* block_start = reinterpret_cast<int64_t*>(w);
  p.block_start = block_start;
  w += align((B + 1) * 8);
  if (plan.kind != FpsPlan::kCoopRegisters) {
    p.dist = reinterpret_cast<T*>(w);
    w += align(B * N * static_cast<int64_t>(sizeof(T)));
  }
  if (plan.kind == FpsPlan::kSteps) p.current = reinterpret_cast<int64_t*>(w);

  // From pageable memory: returns once the host vector has been staged, so it may go away.
  cudaError_t err = cudaMemcpyAsync(block_start, plan.block_start.data(), (B + 1) * 8,
                                    cudaMemcpyHostToDevice, stream);
  if (err != cudaSuccess) return err;

  if (plan.kind != FpsPlan::kSteps) {
    void* args[] = {&p};
    return cudaLaunchCooperativeKernel(coop_kernel<T>(plan.kind, plan.points_per_thread, D),
                                       dim3(static_cast<unsigned>(plan.blocks)), dim3(kThreads),
                                       args, 0, stream);
  }

  // Step mode: the seeds are the first S outputs; then two launches per further sample.
  err = cudaMemcpy2DAsync(out, n_samples * 8, seeds, S * 8, S * 8, B, cudaMemcpyDeviceToDevice, stream);
  if (err != cudaSuccess) return err;
  for (int64_t m = 0; m + 1 < n_samples; ++m) {
    if (D == 3) {
      fps_step_update_kernel<T, 3><<<static_cast<unsigned>(plan.blocks), kThreads, 0, stream>>>(p, m);
    } else {
      fps_step_update_kernel<T, 0><<<static_cast<unsigned>(plan.blocks), kThreads, 0, stream>>>(p, m);
    }
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
    if (m + 1 >= S) {
      fps_step_pick_kernel<T><<<static_cast<unsigned>(B), kThreads, 0, stream>>>(p, m + 1);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
  }
  return cudaSuccess;
}

template cudaError_t fps_run<float>(const FpsPlan&, const float*, const int64_t*, const int64_t*,
                                    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t*, void*,
                                    cudaStream_t);
template cudaError_t fps_run<double>(const FpsPlan&, const double*, const int64_t*, const int64_t*,
                                     int64_t, int64_t, int64_t, int64_t, int64_t, int64_t*, void*,
                                     cudaStream_t);

}  // namespace cuda
}  // namespace g3
