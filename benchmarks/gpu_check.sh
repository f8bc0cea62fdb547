#!/usr/bin/env bash
# The one GPU check, for a lent GPU machine (no GPU is needed anywhere else):
#   bash benchmarks/gpu_check.sh OUTDIR
# builds the extension with CUDA for the local GPU's architecture, runs the CUDA tests (CUDA
# results must equal the CPU results), the CUDA tests under compute-sanitizer (memcheck and
# racecheck: zero reports), and the GPU benchmarks; writes logs and result tables to OUTDIR.
# Exit status: non-zero if the build, a test or a sanitizer check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$($PY -c 'import torch; c=torch.cuda.get_device_capability(); print(f"{c[0]}.{c[1]}")')
  export TORCH_CUDA_ARCH_LIST
fi
status=0
{ nvidia-smi; $PY -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

echo "== build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
t0=$(date +%s)
if ! $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "built in $(( $(date +%s) - t0 )) s"
$PY -c 'import group3ad_ext, json; print(json.dumps({k: v for k, v in group3ad_ext.build_info().items() if k != "parallel_backend"}))'

echo "== CUDA tests (CUDA vs CPU)"
# Only the files that hold CUDA tests: others import peers (open3d, ...) that GPU images may lack.
cuda_files=$(grep -l "mark.cuda" tests/test_*.py)
$PY -m pytest -q -m cuda $cuda_files -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

echo "== compute-sanitizer (memcheck, racecheck, synccheck, initcheck) over the CUDA tests"
bash benchmarks/gpu_sanitize.sh "$OUT" || status=1

echo "== GPU benchmarks"
$PY -m benchmarks.run_all --device cuda 2>&1 | tee "$OUT/bench.log"
$PY -m benchmarks.bench_knn --device cuda --flying-pixels 2>&1 | tee -a "$OUT/bench.log"
cp benchmarks/results/*.md benchmarks/results/*.json "$OUT/" 2>/dev/null
exit $status
