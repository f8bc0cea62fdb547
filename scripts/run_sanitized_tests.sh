#!/usr/bin/env bash
# Builds the CPU code with ASan + UBSan (scripts/sanitize_build.sh, into build-san/, leaving the
# normal build alone) and runs the op tests and the property/determinism/fault tests against it.
# Exits non-zero on any failing test and on any sanitizer report, including reports from
# subprocesses that tests start (every report is written to build-san/reports/ and counted).
#   scripts/run_sanitized_tests.sh                 the op tests (see below), CI's selection
#   scripts/run_sanitized_tests.sh tests/test_x.py extra pytest arguments replace the selection
#   HYPOTHESIS_PROFILE=large scripts/run_sanitized_tests.sh   more generated examples
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

SAN_TREE=$(scripts/sanitize_build.sh | tail -n 1)
export G3_SAN_REPORTS=$ROOT/build-san/reports
rm -rf "$G3_SAN_REPORTS"
# shellcheck source=scripts/sanitize_env.sh
source scripts/sanitize_env.sh
# Generated-input tests run about 3-10x slower at -O0 under ASan: fewer examples by default.
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-sanitize}
# The sanitized build is CPU-only: tests must not expect the CUDA kernels CI asks for elsewhere.
unset FORCE_CUDA

cd "$SAN_TREE"
if [ "$#" -gt 0 ]; then
  args=("$@")
else
  # The op tests: tests/test_<module>.py for every public op module in group3ad_ext/, plus the
  # generated-input, determinism and fault tests. New ops are picked up without editing this.
  args=()
  for m in group3ad_ext/*.py; do
    name=$(basename "$m" .py)
    case "$name" in _*) continue ;; esac
    [ -f "tests/test_$name.py" ] && args+=("tests/test_$name.py")
  done
  for t in test_build test_properties test_determinism test_faults; do
    [ -f "tests/$t.py" ] && args+=("tests/$t.py")
  done
  args+=(-m "not slow and not cuda")
fi

# GCC 12's libubsan, loaded beside libasan, writes its reports to stderr whatever log_path says
# (checked with a one-line float-cast-overflow library; alone it honours log_path). pytest's
# default fd-level capture swallowed such a report when UBSan halted the process mid-test, so
# capture is at the sys level (C++ writes reach the real stderr), pytest's stderr is kept in a
# file (shown after the run) and each "runtime error:" in it, with its stack, becomes a report
# file. A UBSan report in a child process halts the child (halt_on_error=1), which fails the
# test that started it.
stderr_log=$G3_SAN_REPORTS/../pytest-stderr.log
status=0
"$PY" -m pytest -q -p no:cacheprovider --capture=sys "${args[@]}" 2>"$stderr_log" || status=$?
cat "$stderr_log" >&2
if grep -q 'runtime error:' "$stderr_log"; then
  grep -A 40 'runtime error:' "$stderr_log" > "$G3_SAN_REPORTS/ubsan-from-stderr"
fi

# allocator_may_return_null=1 makes ASan log "WARNING: AddressSanitizer failed to allocate" when
# a test deliberately asks for more memory than exists (tests/test_faults.py): that is the
# expected outcome, not a report. Any other line in any log file is.
reports=()
for f in $(find "$G3_SAN_REPORTS" -type f 2>/dev/null | sort); do
  if grep -qv 'WARNING: AddressSanitizer failed to allocate' "$f"; then
    reports+=("$f")
  else
    echo "expected (deliberate impossible allocation): $(head -c 200 "$f")"
  fi
done
if [ "${#reports[@]}" -gt 0 ]; then
  echo "== sanitizer reports (${#reports[@]} file(s)) =="
  for f in "${reports[@]}"; do echo "--- $f"; cat "$f"; done
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitized test run failed (pytest exit $status; no sanitizer report file)"
  exit "$status"
fi
echo "sanitized test run: no AddressSanitizer/UndefinedBehaviorSanitizer reports"
