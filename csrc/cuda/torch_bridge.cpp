// torch side of csrc/cuda/torch_bridge.h: scratch memory and status checks for the CUDA kernels.
#include "cuda/torch_bridge.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>

namespace g3 {
namespace cuda {

cudaError_t temp_alloc(void** ptr, size_t bytes, cudaStream_t stream) {
  *ptr = nullptr;
  try {
    // Never 0 bytes: cub reads a null scratch pointer as "tell me the size" and sorts nothing.
    *ptr = c10::cuda::CUDACachingAllocator::raw_alloc_with_stream(std::max<size_t>(bytes, 1), stream);
  } catch (const c10::OutOfMemoryError&) {
    *ptr = nullptr;
  }
  if (*ptr == nullptr) {
    cudaGetLastError();  // the allocator may leave cudaErrorMemoryAllocation behind: not sticky
    return cudaErrorMemoryAllocation;
  }
  return cudaSuccess;
}

void temp_free(void* ptr) {
  if (ptr) c10::cuda::CUDACachingAllocator::raw_delete(ptr);
}

void check_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    TORCH_CHECK_WITH(OutOfMemoryError, false, what, ": CUDA out of memory for temporary buffers");
  }
  TORCH_CHECK(false, what, " failed: ", cudaGetErrorString(err));
}

}  // namespace cuda
}  // namespace g3
