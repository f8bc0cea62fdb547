"""Builds the CPU emulation of csrc/cuda/*.cu into one shared library (see README.md).

    python tools/cuda_emu/build.py [--src CSRC_DIR] [--out BUILD_DIR] [--no-sanitize]

Defaults: --src <repo>/csrc (env G3_EMU_SRC), --out <repo>/build/cuda_emu (env G3_EMU_BUILD;
build/ is git-ignored). Prints the library's path. Each object is rebuilt only when the text of
its source, of a header it included (from the compiler's dependency list) or the flags changed,
so a run with nothing changed costs a few file reads.
"""

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import shlex
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if __package__:
    from . import patch
else:
    import patch

# CUDA headers the sources include, served by cuda_emu.h / cub_emu.h.
SHIMS = {
    "cuda_runtime.h": "cuda_emu.h",
    "cuda_runtime_api.h": "cuda_emu.h",
    "cooperative_groups.h": "cuda_emu.h",
    "cuda_fp16.h": "cuda_emu.h",
    "cuda_bf16.h": "cuda_emu.h",
    "cub/cub.cuh": "cub_emu.h",
}

# Scratch budgets of the launchers, shrunk so that small test inputs already take their
# chunked paths (per kernel source: constant -> emulated value).
BUDGETS = {
    "geometry_kernel.cu": {"kTempBudget": "int64_t(1) << 16"},
    "knn_kernel.cu": {"kBruteChunkBytes": "size_t(1) << 16"},
}

# Counters the tests read (cuda_emu.h declares them): the grid kNN's distance evaluations, so a
# test can show that the search stays local (a grid gone coarse still gives exact results, only
# slowly). The site must occur once, or the build fails naming this table.
PROBES = {
    "knn_kernel.cu": [("cand.offer(sq_dist3(", "++emu_knn_dist_evals, cand.offer(sq_dist3(")],
}

# -ffp-contract=off: the real build compiles the kernels with nvcc --fmad=false (setup.py), so no
# multiply-add may be fused here either. float-cast-overflow (not part of GCC's "undefined"):
# a NaN or out-of-range float converted to an integer is undefined on the host and saturates on
# the device, so the emulation could not claim the device's result; the sanitized CPU build
# checks it too.
BASE_FLAGS = ["-std=c++20", "-O1", "-g", "-fPIC", "-ffp-contract=off", "-fno-omit-frame-pointer", "-pthread"]
SAN_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=undefined,float-cast-overflow"]


class BuildError(RuntimeError):
    pass


def compiler():
    return os.environ.get("CXX", "g++")


def default_src():
    return pathlib.Path(os.environ.get("G3_EMU_SRC", ROOT / "csrc")).resolve()


def default_out():
    return pathlib.Path(os.environ.get("G3_EMU_BUILD", ROOT / "build" / "cuda_emu")).resolve()


def _sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _file_sha(path):
    try:
        return _sha(pathlib.Path(path).read_bytes())
    except FileNotFoundError:
        return "missing"


def _write_if_changed(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _deps(depfile):
    """Headers from a g++ -MD file (the object's own line; continuation lines joined)."""
    text = depfile.read_text().replace("\\\n", " ")
    return shlex.split(text.split(":", 1)[1]) if ":" in text else []


def _stamp_key(cmd, source, deps):
    return _sha(" ".join(cmd), _file_sha(source), *(f"{d}={_file_sha(d)}" for d in sorted(deps)))


def _compile(cmd, source, obj):
    """Compiles unless the stamp (command, source and recorded headers' hashes) still holds."""
    stamp, depfile = obj.with_suffix(".stamp"), obj.with_suffix(".d")
    if obj.exists() and stamp.exists():
        old = json.loads(stamp.read_text())
        if old["key"] == _stamp_key(cmd, source, old["deps"]):
            return False
    proc = subprocess.run([*cmd, "-MD", "-MF", str(depfile), "-c", str(source), "-o", str(obj)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"compiling {source} failed:\n{proc.stderr[-8000:]}")
    deps = [d for d in _deps(depfile) if pathlib.Path(d).resolve() != pathlib.Path(source).resolve()]
    stamp.write_text(json.dumps({"key": _stamp_key(cmd, source, deps), "deps": deps}))
    return True


def _default_jobs() -> int:
    """MAX_JOBS, as torch.utils.cpp_extension reads it, else every CPU."""
    env = os.environ.get("MAX_JOBS")
    if env is None:
        return os.cpu_count() or 1
    if not env.isdigit() or int(env) < 1:
        raise BuildError(f"MAX_JOBS must be a positive integer, got {env!r}")
    return int(env)


def build(src=None, out=None, sanitize=True, jobs=None):
    """Builds (if needed) and returns the path of libg3_cuda_emu.so; ``jobs`` parallel compiles
    (default: MAX_JOBS, else every CPU)."""
    src = pathlib.Path(src).resolve() if src else default_src()
    out = pathlib.Path(out).resolve() if out else default_out()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock, contextlib.ExitStack() as stack:
        # One build at a time per folder (parallel test workers share it).
        fcntl.flock(lock, fcntl.LOCK_EX)
        stack.callback(fcntl.flock, lock, fcntl.LOCK_UN)

        for name, target in SHIMS.items():
            _write_if_changed(out / "include" / name, f'#pragma once\n#include "{HERE / target}"\n')
        try:
            generated = patch.patch_tree(src, out / "gen", BUDGETS, PROBES)
        except patch.PatchError as e:
            raise BuildError(str(e)) from None

        flags = BASE_FLAGS + (SAN_FLAGS if sanitize else [])
        cmd = [compiler(), *flags, f"-I{out / 'include'}", f"-I{src}", f"-I{HERE}", "-include", str(HERE / "cuda_emu.h")]
        units = [(["-x", "c++"], g) for g in generated] + [([], HERE / "cuda_emu.cpp"), ([], HERE / "driver.cpp")]
        objs = [out / "obj" / (pathlib.Path(u).stem + ".o") for _, u in units]
        (out / "obj").mkdir(exist_ok=True)
        # The kernels' sources take the longest: start them first.
        with concurrent.futures.ThreadPoolExecutor(jobs or _default_jobs()) as pool:
            rebuilt = list(pool.map(lambda a: _compile(cmd + a[0][0], a[0][1], a[1]), zip(units, objs)))

        lib = out / "libg3_cuda_emu.so"
        link = [compiler(), *flags, "-shared", "-Wl,-z,defs", *map(str, objs), "-o", str(lib)]
        link_stamp = out / "link.stamp"
        key = _sha(" ".join(link), *(_file_sha(o) for o in objs))
        if any(rebuilt) or not lib.exists() or not link_stamp.exists() or link_stamp.read_text() != key:
            proc = subprocess.run(link, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"linking failed:\n{proc.stderr[-8000:]}")
            link_stamp.write_text(key)
        return lib


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="csrc folder to emulate (default: env G3_EMU_SRC or <repo>/csrc)")
    ap.add_argument("--out", help="build folder (default: env G3_EMU_BUILD or <repo>/build/cuda_emu)")
    ap.add_argument("--no-sanitize", action="store_true", help="without ASan/UBSan (faster; for debugging)")
    args = ap.parse_args(argv)
    try:
        print(build(args.src, args.out, sanitize=not args.no_sanitize))
    except BuildError as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
