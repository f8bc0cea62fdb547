// Host-side launcher for exact kNN on CUDA, used by the knn op glue and by the geometry ops.
// Raw device pointers and a stream only: no torch headers, so .cu files stay lean.
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace g3 {
namespace cuda {

// One cloud: for m queries (m,3) the k nearest of n points (n,3), 1 <= k <= n. d2 (m,k) and
// idx (m,k) sorted ascending, ties to the lower index (same order as the CPU KnnIndex).
// Temporary memory comes from torch's caching allocator on `stream` (torch_bridge.h). Returns
// the first CUDA error (also of the launch; cudaErrorMemoryAllocation when scratch memory ran
// out), cudaSuccess otherwise.
template <typename T>
cudaError_t knn_launch(const T* query, int64_t m, const T* points, int64_t n, int64_t k,
                       T* d2, int64_t* idx, cudaStream_t stream);

}  // namespace cuda
}  // namespace g3
