#!/usr/bin/env bash
# Installs what group3ad needs on a fresh Debian machine and builds the extension in place
# (editable install). Safe to rerun: steps already done are quick no-ops, and the extension is
# rebuilt only when its sources change.
#   FORCE_CUDA=1 scripts/setup_env.sh   also compile the CUDA kernels (needs nvcc, no GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# open3d's shared library links libusb-1.0; `import open3d` fails without it.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so'; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi

# torch 2.14.1 is the cu130 build: it matches nvcc 13.0, so the CUDA kernels compile
# even on machines without a GPU.
if ! $PY -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.14.1") else 1)' 2>/dev/null; then
  $PY -m pip install -q "torch==2.14.1"
fi
$PY -m pip install -q -r requirements.txt -r requirements-test.txt

stamp=build/.g3_stamp
want="$( (cat setup.py csrc/sources.py; find csrc group3ad_ext -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' \) | sort | xargs cat; echo "cuda=${FORCE_CUDA:-0} san=${G3_SANITIZE:-0}") | sha1sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! $PY -c 'import group3ad_ext' 2>/dev/null; then
  MAX_JOBS=${MAX_JOBS:-2} $PY -m pip install --no-build-isolation --no-deps -e . 
  mkdir -p build && echo "$want" > "$stamp"
fi
$PY -c 'import group3ad_ext, json; print("group3ad_ext build:", json.dumps({k: v for k, v in group3ad_ext.build_info().items() if k != "parallel_backend"}))'
