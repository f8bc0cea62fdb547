// What the lean .cu files take from torch without including its headers (defined in
// torch_bridge.cpp, compiled by the host compiler with torch):
//  - temporary device memory from torch's CUDA caching allocator, so the kernels' scratch is
//    counted by torch.cuda.max_memory_allocated, reused across calls, and never competes with
//    memory torch keeps cached;
//  - the glue's check of a launcher's status: out of memory becomes torch.OutOfMemoryError,
//    any other error a RuntimeError naming the op.
#pragma once

#include <cstddef>
#include <cuda_runtime_api.h>

namespace g3 {
namespace cuda {

// Stream-ordered scratch of `bytes` (at least 1) for work on `stream`; *ptr = nullptr and
// cudaErrorMemoryAllocation when the allocator cannot provide it.
cudaError_t temp_alloc(void** ptr, size_t bytes, cudaStream_t stream);

// Returns scratch from temp_alloc (nullptr is a no-op). Work already queued on the stream
// it was allocated for may still use it: the allocator only hands it out again on that stream.
void temp_free(void* ptr);

// Throws unless err is cudaSuccess: torch.OutOfMemoryError for cudaErrorMemoryAllocation,
// RuntimeError("<what> failed: <CUDA message>") otherwise.
void check_status(cudaError_t err, const char* what);

// Typed form, like cudaMallocAsync's: temp_alloc(&keys, n * sizeof(uint32_t), stream).
template <typename T>
cudaError_t temp_alloc(T** ptr, size_t bytes, cudaStream_t stream) {
  void* raw = nullptr;
  const cudaError_t err = temp_alloc(&raw, bytes, stream);
  *ptr = static_cast<T*>(raw);
  return err;
}

}  // namespace cuda
}  // namespace g3
