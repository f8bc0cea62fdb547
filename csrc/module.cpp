// Python module group3ad_ext._C: importing it runs the static op registrations; build_info
// reports what this binary was compiled with.
#include <ATen/Parallel.h>
#include <torch/extension.h>
#include <torch/version.h>

#ifndef G3_VERSION
#define G3_VERSION "unknown"
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict d;
  d["version"] = G3_VERSION;
  d["torch_version"] = TORCH_VERSION;
#ifdef G3_WITH_CUDA
  d["cuda"] = true;
  d["cuda_archs"] = std::string(G3_CUDA_ARCHS);
#else
  d["cuda"] = false;
  d["cuda_archs"] = std::string();
#endif
  d["cpu_threads"] = at::get_num_threads();
  d["parallel_backend"] = at::get_parallel_info();
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "group3ad_ext compiled ops (registered under torch.ops.group3ad_ext)";
  m.def("build_info", &build_info, "What this binary was compiled with");
}
