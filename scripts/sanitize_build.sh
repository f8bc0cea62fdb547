#!/usr/bin/env bash
# Builds group3ad_ext's CPU code with AddressSanitizer + UndefinedBehaviorSanitizer into its own
# copy of the source tree, build-san/src, so the normal build (group3ad_ext/_C*.so in the
# checkout, and the editable install) is never overwritten. Incremental: the copy keeps the
# sources' modification times and ninja's object files, so a rebuild compiles only what changed.
#   scripts/sanitize_build.sh        prints the path of the sanitized tree on its last line
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SAN=build-san/src
mkdir -p "$SAN"

# Mirror exactly the files git would commit (tracked + untracked, not ignored). Everything in the
# copy except its build products is replaced, so a file deleted here disappears there too
# (csrc/sources.py globs csrc/, and a stale .cpp would otherwise still be compiled).
find "$SAN" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z -c -o --exclude-standard | grep -zv '^build-san/' \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar -cf - --null -T - | tar -xf - -C "$SAN"
else
  tar -cf - --exclude=./build --exclude=./build-san --exclude='*.so' --exclude=.git . | tar -xf - -C "$SAN"
fi

# CPU kernels only: the sanitizers instrument host code, and nvcc objects cannot be checked
# this way (compute-sanitizer covers the CUDA kernels: benchmarks/gpu_sanitize.sh).
(cd "$SAN" && G3_SANITIZE=1 FORCE_CPU=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
  $PY setup.py -q build_ext --inplace >build-san.log 2>&1) || { cat "$SAN/build-san.log"; exit 1; }
echo "$PWD/$SAN"
