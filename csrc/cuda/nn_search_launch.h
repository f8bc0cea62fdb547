// Host-side launcher of the CUDA nn_search kernels (csrc/cuda/nn_search_kernel.cu). Raw device
// pointers and a stream only: no torch headers, so the .cu stays lean.
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace g3 {
namespace cuda {

enum class NnDtype : int { kFloat32, kFloat64, kFloat16, kBFloat16 };

// The fused kernel keeps at most this many candidates per query in registers (two per lane).
constexpr int64_t kNnMaxCandidates = 64;

// queries (q_rows, dims) and bank (bank_rows, dims), row-major, same dtype. For every query:
// the m (<= kNnMaxCandidates, <= bank_rows, > k) bank rows of smallest float32 direct
// squared distance (fused tiles, no q_rows x bank_rows matrix), then their exact float64
// distances, sorted with lowest-index ties: dist (q_rows, k) float32 Euclidean, idx
// (q_rows, k). failed[q] = 1 where the rounding bound cannot certify the answer; the caller
// recomputes those rows. cand_idx (q_rows, m) and cand_worst (q_rows) are scratch.
// Returns the first CUDA error of the launches, cudaSuccess otherwise.
cudaError_t nn_search_launch(NnDtype dtype, const void* queries, const void* bank, int64_t q_rows,
                             int64_t bank_rows, int64_t dims, int64_t k, int64_t m,
                             int64_t* cand_idx, float* cand_worst, float* dist, int64_t* idx,
                             uint8_t* failed, cudaStream_t stream);

}  // namespace cuda
}  // namespace g3
