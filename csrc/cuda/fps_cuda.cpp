// torch glue of the fps CUDA kernels (fps_kernel.cu): checks, plan, workspace, stream.
// The Python wrapper has validated every argument (seeds in range and distinct, lengths in
// [n_samples, N]); here only the invariants the kernels rely on are re-checked on the host.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/fps_launch.h"

namespace {

at::Tensor fps_cuda(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start_idx,
                    int64_t n_samples) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) >= 1, "fps: points must be (B,N,D), D >= 1");
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "fps: points must be float32 or float64");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && start_idx.scalar_type() == at::kLong,
              "fps: lengths and start_idx must be int64");
  TORCH_CHECK(lengths.device() == points.device() && start_idx.device() == points.device(),
              "fps: points, lengths and start_idx must be on the same device");
  const int64_t B = points.size(0), N = points.size(1), D = points.size(2);
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == B, "fps: lengths must be (B,)");
  TORCH_CHECK(start_idx.dim() == 2 && start_idx.size(0) == B && start_idx.size(1) >= 1 &&
                  start_idx.size(1) <= n_samples,
              "fps: start_idx must be (B,S) with 1 <= S <= n_samples");
  TORCH_CHECK(n_samples >= 1, "fps: n_samples must be >= 1");

  c10::cuda::CUDAGuard guard(points.device());
  at::Tensor out = at::empty({B, n_samples}, points.options().dtype(at::kLong));
  if (B == 0) return out;
  const at::Tensor pts = points.contiguous();
  const at::Tensor len = lengths.contiguous();
  const at::Tensor seeds = start_idx.contiguous();
  // The block partition follows the lengths: one small device-to-host copy.
  const at::Tensor len_host = len.to(at::kCPU);
  const int64_t* lh = len_host.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(lh[b] >= n_samples && lh[b] <= N, "fps: every length must lie in [n_samples, N]");
  }

  const int elem = points.scalar_type() == at::kFloat ? 4 : 8;
  g3::cuda::FpsPlan plan;
  cudaError_t err = g3::cuda::fps_plan(points.get_device(), B, N, D, elem, lh, &plan);
  TORCH_CHECK(err == cudaSuccess, "fps: planning the CUDA launch failed: ", cudaGetErrorString(err));
  at::Tensor workspace = at::empty({plan.workspace_bytes}, points.options().dtype(at::kByte));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(points.get_device()).stream();
  if (elem == 4) {
    err = g3::cuda::fps_run<float>(plan, pts.data_ptr<float>(), len.data_ptr<int64_t>(),
                                   seeds.data_ptr<int64_t>(), B, N, D, seeds.size(1), n_samples,
                                   out.data_ptr<int64_t>(), workspace.data_ptr(), stream);
  } else {
    err = g3::cuda::fps_run<double>(plan, pts.data_ptr<double>(), len.data_ptr<int64_t>(),
                                    seeds.data_ptr<int64_t>(), B, N, D, seeds.size(1), n_samples,
                                    out.data_ptr<int64_t>(), workspace.data_ptr(), stream);
  }
  if (err == cudaSuccess) err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "fps: CUDA launch failed: ", cudaGetErrorString(err));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CUDA, m) {
  m.impl("fps", &fps_cuda);
}
