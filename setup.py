"""Build group3ad_ext (C++/CUDA ops) and install the group3ad pipeline package.

CUDA kernels are compiled when torch was built with CUDA and nvcc is found (CUDA_HOME), or
when FORCE_CUDA=1. The decision never depends on torch.cuda.is_available(): build machines
often have no GPU. TORCH_CUDA_ARCH_LIST overrides the default architectures.

Environment switches:
    FORCE_CUDA=1      build the CUDA kernels (fails loudly if nvcc is missing)
    FORCE_CPU=1       build the CPU kernels only, even where CUDA is available
    G3_SANITIZE=1     build the CPU code with AddressSanitizer + UBSan (see tests/README.md)
    G3_DEBUG=1        -O0 -g
"""

import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csrc.sources import cpu_sources, cuda_sources  # noqa: E402  (one source list, shared with CMake)

VERSION = "0.1.0"
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def _locate_cuda_home():
    """Point torch at the real toolkit before cpp_extension guesses: a `nvcc` wrapper script
    on PATH (e.g. /usr/local/bin/nvcc -> /usr/local/cuda-13.0/bin/nvcc) makes torch pick its
    parent's parent (/usr/local), which has no CUDA headers."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    for cand in ("/usr/local/cuda",):
        if os.path.isfile(os.path.join(cand, "bin", "nvcc")) and os.path.isfile(
            os.path.join(cand, "include", "cuda_runtime_api.h")
        ):
            os.environ["CUDA_HOME"] = cand
            return


_locate_cuda_home()


def _want_cuda():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    if os.environ.get("FORCE_CPU", "0") == "1":
        return False
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if CUDA_HOME is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME)")
        if torch.version.cuda is None:
            raise RuntimeError("FORCE_CUDA=1 but this torch is a CPU build; install a CUDA build")
        return True
    return CUDA_HOME is not None and torch.version.cuda is not None


def make_extension():
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    root = os.path.dirname(os.path.abspath(__file__))
    rel = lambda paths: [os.path.relpath(p, root) for p in paths]  # noqa: E731
    with_cuda = _want_cuda()
    sanitize = os.environ.get("G3_SANITIZE", "0") == "1"
    debug = os.environ.get("G3_DEBUG", "0") == "1" or sanitize

    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -ffp-contract=off: no fused multiply-add on the host, so CPU and CUDA (-fmad=false)
    # round every distance identically and FPS/kNN picks agree bit for bit.
    # -fno-math-errno -fno-trapping-math: sqrt inline and selects of computed values, so loops
    # with data-dependent choices vectorise (the FPFH pair loop). Neither changes a result: no
    # code reads errno or floating-point exception flags.
    cxx = ["-std=c++20", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", *opt]
    ldflags = ["-fopenmp"]
    if sanitize:
        # -fno-wrapv undoes the -fwrapv that Python's own CFLAGS add: with wrapping defined,
        # UBSan cannot report signed integer overflow (the 32-bit index bug class).
        # float-cast-overflow is not part of GCC's -fsanitize=undefined: it catches a NaN or
        # huge float turned into a histogram bin or an index.
        san = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-wrapv",
               "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        cxx += san
        ldflags += san
    macros = [("G3_VERSION", f'"{VERSION}"')]
    include_dirs = [os.path.join(root, "csrc")]
    sources = rel(cpu_sources(root))

    if with_cuda:
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
        macros += [("G3_WITH_CUDA", "1"), ("G3_CUDA_ARCHS", f'"{archs}"')]
        nvcc = ["-O3", "-std=c++20", "--fmad=false", "-lineinfo", "--expt-relaxed-constexpr"]
        return CUDAExtension(
            name="group3ad_ext._C",
            sources=sources + rel(cuda_sources(root)),
            include_dirs=include_dirs,
            define_macros=macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=ldflags,
        )
    return CppExtension(
        name="group3ad_ext._C",
        sources=sources,
        include_dirs=include_dirs,
        define_macros=macros,
        extra_compile_args={"cxx": cxx},
        extra_link_args=ldflags,
    )


def main():
    from torch.utils.cpp_extension import BuildExtension

    setup(
        name="group3ad",
        version=VERSION,
        description="Group3AD high-resolution 3D anomaly detection, with exact point-cloud kernels",
        packages=["group3ad_ext"] + find_packages("python"),
        package_dir={"group3ad_ext": "group3ad_ext", "": "python"},
        package_data={"group3ad": ["assets/*", "assets/**/*"]},
        ext_modules=[make_extension()],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
        python_requires=">=3.10",
        install_requires=["torch>=2.4", "numpy", "scikit-learn", "open3d>=0.20", "tqdm", "matplotlib"],
        extras_require={
            "test": ["pytest", "hypothesis"],
            "peers": ["fpsample", "scipy", "pykdtree", "faiss-cpu"],
        },
        entry_points={"console_scripts": ["group3ad=group3ad.cli:main"]},
        zip_safe=False,
    )


if __name__ == "__main__":
    main()
