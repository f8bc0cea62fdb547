# Sourced by scripts/run_sanitized_tests.sh (and usable by hand: `source scripts/sanitize_env.sh`):
# the runtime settings for running Python against the ASan+UBSan build of group3ad_ext.
#
# Why each setting:
#   LD_PRELOAD          python and libtorch are not instrumented; the ASan runtime must be the
#                       first library loaded or it refuses to start ("ASan runtime does not come
#                       first"). UBSan's runtime is preloaded beside it for the same reason.
#   detect_leaks=0      CPython and torch keep interned objects, type caches and thread pools
#                       alive until exit by design; LeakSanitizer would report thousands of such
#                       "leaks" from code we do not own and drown every real report.
#   protect_shadow_gap=0  the CUDA runtime inside torch's cu130 libraries maps memory at fixed
#                       low addresses that ASan reserves as its shadow gap; without this,
#                       `import torch` can fail on machines with a CUDA driver.
#   allocator_may_return_null=1  a request larger than memory must fail the way it does in
#                       production (malloc returns NULL -> torch raises RuntimeError, C++ throws
#                       std::bad_alloc -> MemoryError), which tests/test_faults.py checks; by
#                       default ASan aborts the process instead.
# Not needed, checked on this machine: detect_odr_violation=0 (only our .so is instrumented, so
# the duplicate globals inside torch/open3d/faiss are invisible to ASan) and
# alloc_dealloc_mismatch=0 (no report from torch, pybind11 or the peers with it on).
#   log_path            every ASan report (from pytest or from any subprocess a test starts)
#                       lands in a file, so a report in a child process cannot be missed: the
#                       runner fails when any file appears there. UBSan ignores its log_path
#                       beside ASan (GCC 12) and prints to stderr: the runner scans pytest's.
#   halt_on_error/abort_on_error  stop at the first report: any report is a bug to fix.
# PYTHONMALLOC=malloc routes CPython's small-object allocations through malloc, so ASan sees
# them too (an overrun into a Python object is caught, not absorbed by pymalloc's arenas).
: "${G3_SAN_REPORTS:=$PWD/build-san/reports}"
mkdir -p "$G3_SAN_REPORTS"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:protect_shadow_gap=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:log_path=$G3_SAN_REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$G3_SAN_REPORTS/ubsan"
export PYTHONMALLOC=malloc
