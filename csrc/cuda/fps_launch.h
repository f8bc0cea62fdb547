// Interface between the fps CUDA glue (fps_cuda.cpp, torch) and its lean kernels
// (fps_kernel.cu, CUDA runtime only).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace g3 {
namespace cuda {

// How one fps call runs: decided on the host from the cloud lengths.
struct FpsPlan {
  // kCoopRegisters: one cooperative launch, D == 3, each thread keeps `points_per_thread`
  //   points and their distances in registers. kCoopGlobal: one cooperative launch, points
  //   read from and distances kept in global memory (any D, or clouds too large for
  //   registers). kSteps: two launches per sample (no cooperative launch possible).
  enum Kind { kCoopRegisters, kCoopGlobal, kSteps };
  Kind kind = kSteps;
  int points_per_thread = 0;
  int64_t blocks = 0;
  std::vector<int64_t> block_start;  // (B+1): cloud b owns blocks [block_start[b], block_start[b+1])
  int64_t workspace_bytes = 0;       // device scratch the run needs
};

// lengths_host: (B,) cloud lengths, 1 <= lengths[b] <= N. elem_size: 4 (float) or 8 (double).
cudaError_t fps_plan(int device, int64_t B, int64_t N, int64_t D, int elem_size,
                     const int64_t* lengths_host, FpsPlan* plan);

// points (B,N,D) contiguous, lengths (B,), seeds (B,S), out (B,n_samples): device pointers.
// workspace: plan.workspace_bytes of device memory, 16-byte aligned. Enqueued on `stream`.
template <typename T>
cudaError_t fps_run(const FpsPlan& plan, const T* points, const int64_t* lengths,
                    const int64_t* seeds, int64_t B, int64_t N, int64_t D, int64_t S,
                    int64_t n_samples, int64_t* out, void* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace g3
