#!/usr/bin/env bash
# compute-sanitizer over the CUDA tests, for a lent GPU machine (run after the CUDA build, e.g.
# from benchmarks/gpu_check.sh):   bash benchmarks/gpu_sanitize.sh OUTDIR
# Tools: memcheck (out-of-bounds and misaligned device accesses, errors returned by CUDA API
# calls), racecheck (shared-memory races), synccheck (illegal __syncthreads / barrier use) and
# initcheck (reads of uninitialised device memory). Zero reports is the bar.
# PYTORCH_NO_CUDA_MEMORY_CACHING=1: without it torch's caching allocator hands out slices of
# big cached blocks, and an overrun past a tensor's end lands in memory that is still
# allocated, invisible to memcheck; with it every tensor is its own cudaMalloc.
# G3_SANITIZE_TOOLS="memcheck racecheck" picks tools; G3_SANITIZE_TESTS=tests/test_knn.py picks tests.
# Exit status: non-zero if any tool reports anything or a test fails; 0 with a notice when
# there is no GPU or no compute-sanitizer (nothing could be checked: said in OUTDIR/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
# Default: the files that hold CUDA tests (others import peers a GPU image may lack).
SELECT=${G3_SANITIZE_TESTS:-$(grep -l "mark.cuda" tests/test_*.py | tr "\n" " ")}

find_sanitizer() {
  command -v compute-sanitizer && return
  local c
  for c in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda*/bin/compute-sanitizer \
           /usr/local/cuda*/compute-sanitizer/compute-sanitizer /opt/nvidia/*/compute-sanitizer; do
    [ -x "$c" ] && { echo "$c"; return; }
  done
  # the nvidia-cuda-sanitizer-api wheel ships the binary inside site-packages
  $PY - <<'PY' 2>/dev/null
import glob, os, site
for d in site.getsitepackages():
    for c in glob.glob(os.path.join(d, "nvidia", "**", "compute-sanitizer"), recursive=True):
        if os.path.isfile(c) and os.access(c, os.X_OK):
            print(c); raise SystemExit
PY
}

if ! $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no CUDA device: compute-sanitizer checks not run" | tee "$OUT/sanitize_skipped.txt"; exit 0
fi
CS=$(find_sanitizer)
if [ -z "$CS" ]; then
  echo "compute-sanitizer not found (CUDA toolkit bin/, or pip install nvidia-cuda-sanitizer-api): checks not run" \
    | tee "$OUT/sanitize_skipped.txt"; exit 0
fi
echo "compute-sanitizer: $CS ($("$CS" --version | tail -1))"

status=0
export PYTORCH_NO_CUDA_MEMORY_CACHING=1 PYTHONUNBUFFERED=1
for tool in ${G3_SANITIZE_TOOLS:-memcheck racecheck synccheck initcheck}; do
  log="$OUT/sanitize_$tool.log"
  extra=()
  [ "$tool" = racecheck ] && extra=(--racecheck-report hazard)
  echo "== compute-sanitizer --tool $tool"
  t0=$(date +%s)
  "$CS" --tool "$tool" "${extra[@]}" --error-exitcode 99 --target-processes all --print-limit 50 \
    $PY -m pytest -q -m "cuda and not slow" $SELECT -p no:cacheprovider > "$log" 2>&1
  rc=$?
  grep -E "(ERROR|RACECHECK|SYNCCHECK|INITCHECK) SUMMARY|passed|failed" "$log" | tail -4
  echo "$tool: exit $rc in $(( $(date +%s) - t0 )) s"
  if [ "$tool" = initcheck ] && [ "$rc" = 99 ] && ! grep -qE "[0-9]+ failed|[0-9]+ error" "$log"; then
    # initcheck reports reads of uninitialised memory inside cub's sorts (NVIDIA/cccl #1790,
    # #1891, #2104), which knn and torch's sort/nonzero run. Only a report whose device frame
    # is one of our kernels (namespace g3) counts; the others stay listed in the log.
    ours=$(grep -E "^=+ +at " "$log" | grep -v "Host Frame" | grep -c "g3::")
    echo "initcheck: $ours report(s) in our kernels; library kernels' reports are listed in $log"
    [ "$ours" = 0 ] && rc=0
  fi
  [ "$rc" = 0 ] || { echo "compute-sanitizer $tool FAILED (see $log)"; status=1; }
done
exit $status
