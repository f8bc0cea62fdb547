"""The one list of compiled sources, used by setup.py and by CMakeLists.txt.

Every C++ file under csrc/ (csrc/*.cpp and csrc/cpu/*.cpp) is a CPU source; the CUDA build adds
csrc/cuda/*.cpp (torch glue, launched on the current stream) and csrc/cuda/*.cu (lean kernels
that include only the CUDA runtime and csrc/common headers). Adding a file is all it takes.

    python csrc/sources.py cpu|cuda    prints the list, ';'-separated, for CMake
"""

import glob
import os
import sys


def _glob(root, *patterns):
    out = []
    for pat in patterns:
        out += glob.glob(os.path.join(root, pat))
    return sorted(out)


def cpu_sources(root):
    return _glob(root, "csrc/*.cpp", "csrc/cpu/*.cpp")


def cuda_sources(root):
    return _glob(root, "csrc/cuda/*.cpp", "csrc/cuda/*.cu")


if __name__ == "__main__":
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    kind = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    files = cpu_sources(here) if kind == "cpu" else cuda_sources(here)
    sys.stdout.write(";".join(files))
