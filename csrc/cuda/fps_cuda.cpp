// torch glue of the fps CUDA kernels (fps_kernel.cu): checks, plan, workspace, stream.
// The Python wrapper has validated every argument (seeds in range and distinct, lengths in
// [n_samples, N]); here only the invariants the kernels rely on are re-checked on the host.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/fps_launch.h"
#include "cuda/torch_bridge.h"
#include "op_checks.h"

namespace {

at::Tensor fps_cuda(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start_idx,
                    int64_t n_samples) {
  g3::check_fps_args(points, lengths, start_idx, n_samples);
  const int64_t B = points.size(0), N = points.size(1), D = points.size(2);

  c10::cuda::CUDAGuard guard(points.device());
  at::Tensor out = at::empty({B, n_samples}, points.options().dtype(at::kLong));
  if (B == 0) return out;
  const at::Tensor pts = points.contiguous();
  const at::Tensor len = lengths.contiguous();
  const at::Tensor seeds = start_idx.contiguous();
  // The block partition follows the lengths, and a seed out of range would be read out of
  // bounds by the kernel: two small device-to-host copies.
  const at::Tensor len_host = len.to(at::kCPU);
  const at::Tensor seeds_host = seeds.to(at::kCPU);
  const int64_t* lh = len_host.data_ptr<int64_t>();
  const int64_t S = seeds.size(1);
  for (int64_t b = 0; b < B; ++b) {
    g3::check_fps_cloud(b, lh[b], seeds_host.data_ptr<int64_t>() + b * S, S, N, n_samples);
  }

  const int elem = points.scalar_type() == at::kFloat ? 4 : 8;
  g3::cuda::FpsPlan plan;
  cudaError_t err = g3::cuda::fps_plan(points.get_device(), B, N, D, elem, lh, &plan);
  g3::cuda::check_status(err, "fps: planning the CUDA launch");
  at::Tensor workspace = at::empty({plan.workspace_bytes}, points.options().dtype(at::kByte));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(points.get_device()).stream();
  if (elem == 4) {
    err = g3::cuda::fps_run<float>(plan, pts.data_ptr<float>(), len.data_ptr<int64_t>(),
                                   seeds.data_ptr<int64_t>(), B, N, D, S, n_samples,
                                   out.data_ptr<int64_t>(), workspace.data_ptr(), stream);
  } else {
    err = g3::cuda::fps_run<double>(plan, pts.data_ptr<double>(), len.data_ptr<int64_t>(),
                                    seeds.data_ptr<int64_t>(), B, N, D, S, n_samples,
                                    out.data_ptr<int64_t>(), workspace.data_ptr(), stream);
  }
  if (err == cudaSuccess) err = cudaGetLastError();
  g3::cuda::check_status(err, "fps: CUDA launch");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CUDA, m) {
  m.impl("fps", &fps_cuda);
}
