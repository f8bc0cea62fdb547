"""Runs emulated CUDA launchers (libg3_cuda_emu.so, see build.py) in a child process.

The library is built with ASan, which must be the first library of a process: loaded into a
running Python it refuses to start. So the calls run in a child Python started with libasan in
LD_PRELOAD; the child needs only numpy and ctypes (no torch). The parent gets each call's
outputs back, or an EmulationError when the child reported a sanitizer or emulator error, exited
abnormally or exceeded its timeout.

    from tools.cuda_emu import runner
    [res] = runner.run(lib, [("knn", dict(query=q, points=p, query_lengths=ql, point_lengths=pl, k=8))])
    res["status"], res["dist"], res["idx"]

Calls and their results (arrays are numpy, shapes as the torch ops'):
    fps(points, lengths, seeds, n_samples)            -> status, out, kind, blocks
    knn(query, points, query_lengths, point_lengths, k) -> status, dist, idx, dist_evals
        dist_evals: candidate distances the grid search evaluated (0 on the brute-force path)
    normals(points, radius, max_nn)                   -> status, normals
    fpfh(points, normals, indices, radius, max_nn)    -> status, fpfh          (indices may be None)
    fpfh_variation(points, features, k)               -> status, variation
    nn_search(queries, bank, k, dtype)                -> status, dist, idx, failed, cand_idx, cand_worst
        dtype "float32" | "float64" | "float16" | "bfloat16" (bfloat16 arrays as their uint16 bits);
        k must leave the kernels in use (m <= 64 candidates)
status is the launcher's cudaError_t (0 = success).
"""

import ctypes
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np

FPS_KINDS = {0: "coop-registers", 1: "coop-global", 2: "steps"}  # FpsPlan::Kind
NN_DTYPES = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}  # NnDtype
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "CUDA-EMU ERROR", "ERROR: LeakSanitizer")


class EmulationError(AssertionError):
    pass


# ------------------------------------------------------------------------ parent side

def libasan():
    """Path of the compiler's ASan runtime, or None."""
    cxx = os.environ.get("CXX", "g++")
    try:
        path = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


def run(lib, calls, env=None, timeout=120):
    """Runs calls [(name, kwargs), ...] in one child process; returns their result dicts.
    env: extra environment for the child (EMU_SMS, EMU_OCC, EMU_COOP, EMU_SEED)."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    preload = libasan()
    if preload is None:
        raise EmulationError("no libasan found (g++ -print-file-name=libasan.so) to preload")
    child_env["LD_PRELOAD"] = preload
    # Python itself leaks at exit; allocations of the emulated launchers are counted instead
    # (the child fails a call that leaves scratch memory allocated).
    child_env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:exitcode=23"
    child_env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    with tempfile.TemporaryDirectory(prefix="g3_cuda_emu_") as tmp:
        inp, out = os.path.join(tmp, "calls.pkl"), os.path.join(tmp, "results.pkl")
        with open(inp, "wb") as f:
            pickle.dump(calls, f)
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(lib), inp, out],
                                  env=child_env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            tail = (e.stderr or b"")[-4000:]
            raise EmulationError(f"emulation timed out after {timeout} s (hang?): {[c[0] for c in calls]}\n"
                                 f"{tail.decode(errors='replace') if isinstance(tail, bytes) else tail}") from None
        marks = [m for m in SANITIZER_MARKS if m in proc.stderr]
        if proc.returncode != 0 or marks:
            raise EmulationError(f"emulation child failed (exit {proc.returncode}, {marks or 'no sanitizer report'}):\n"
                                 f"{proc.stderr[-12000:]}")
        with open(out, "rb") as f:
            return pickle.load(f)


# ------------------------------------------------------------------------ child side

_P = ctypes.c_void_p
_I = ctypes.c_int64
_SIGNATURES = {
    "emu_fps": [ctypes.c_int, _P, _P, _P, _I, _I, _I, _I, _I, _P, _P, _P],
    "emu_knn": [ctypes.c_int, _P, _P, _P, _P, _I, _I, _I, _I, _P, _P],
    "emu_normals": [_P, _I, ctypes.c_double, _I, _P],
    "emu_fpfh": [_P, _P, _I, _P, _I, ctypes.c_double, _I, _P],
    "emu_fpfh_variation": [_P, _I, _P, ctypes.c_int, _I, _I, _P],
    "emu_nn_candidate_count": [_I, _I],
    "emu_nn_search": [ctypes.c_int, _P, _P, _I, _I, _I, _I, _I, _P, _P, _P, _P, _P],
}


def _ptr(a):
    return None if a is None else a.ctypes.data_as(_P)


def _arr(a, dtype=None):
    return np.ascontiguousarray(a, dtype=dtype)


def _fps(lib, points, lengths, seeds, n_samples):
    points, lengths, seeds = _arr(points), _arr(lengths, np.int64), _arr(seeds, np.int64)
    B, N, D = points.shape
    out = np.full((B, n_samples), -7, np.int64)
    kind, blocks = np.zeros(1, np.int32), np.zeros(1, np.int64)
    status = lib.emu_fps(points.itemsize, _ptr(points), _ptr(lengths), _ptr(seeds), B, N, D, seeds.shape[1],
                         n_samples, _ptr(out), _ptr(kind), _ptr(blocks))
    return dict(status=status, out=out, kind=FPS_KINDS[int(kind[0])], blocks=int(blocks[0]))


def _knn(lib, query, points, query_lengths, point_lengths, k):
    query, points = _arr(query), _arr(points)
    ql, pl = _arr(query_lengths, np.int64), _arr(point_lengths, np.int64)
    B, M, _ = query.shape
    dist, idx = np.full((B, M, k), -9, query.dtype), np.full((B, M, k), -9, np.int64)
    lib.emu_knn_dist_evals_take()
    status = lib.emu_knn(query.itemsize, _ptr(query), _ptr(points), _ptr(ql), _ptr(pl), B, M, points.shape[1], k,
                         _ptr(dist), _ptr(idx))
    return dict(status=status, dist=dist, idx=idx, dist_evals=int(lib.emu_knn_dist_evals_take()))


def _normals(lib, points, radius, max_nn):
    points = _arr(points, np.float64)
    out = np.full((len(points), 3), -5.0)
    return dict(status=lib.emu_normals(_ptr(points), len(points), radius, max_nn, _ptr(out)), normals=out)


def _fpfh(lib, points, normals, indices, radius, max_nn):
    points, normals = _arr(points, np.float64), _arr(normals, np.float64)
    ids = None if indices is None else _arr(indices, np.int64)
    nq = len(points) if ids is None else len(ids)
    out = np.full((nq, 33), -5.0)
    status = lib.emu_fpfh(_ptr(points), _ptr(normals), len(points), _ptr(ids), nq, radius, max_nn, _ptr(out))
    return dict(status=status, fpfh=out)


def _fpfh_variation(lib, points, features, k):
    points, features = _arr(points, np.float64), _arr(features)
    out = np.full(len(points), -5.0)
    status = lib.emu_fpfh_variation(_ptr(points), len(points), _ptr(features), features.itemsize,
                                    features.shape[1], k, _ptr(out))
    # The glue returns the features' dtype.
    return dict(status=status, variation=out.astype(features.dtype))


def _nn_search(lib, queries, bank, k, dtype):
    queries, bank = _arr(queries), _arr(bank)
    Q, D = queries.shape
    m = lib.emu_nn_candidate_count(k, len(bank))
    if m > 64:  # kNnMaxCandidates
        raise ValueError(f"k={k}: m={m} candidates, the glue would brute-force without the kernels")
    dist, idx = np.full((Q, k), -1, np.float32), np.full((Q, k), -1, np.int64)
    cand_idx, cand_worst = np.full((Q, m), -3, np.int64), np.full(Q, -3, np.float32)
    failed = np.full(Q, 7, np.uint8)
    status = lib.emu_nn_search(NN_DTYPES[dtype], _ptr(queries), _ptr(bank), Q, len(bank), D, k, m, _ptr(cand_idx),
                               _ptr(cand_worst), _ptr(dist), _ptr(idx), _ptr(failed))
    return dict(status=status, dist=dist, idx=idx, failed=failed, cand_idx=cand_idx, cand_worst=cand_worst)


_CALLS = {"fps": _fps, "knn": _knn, "normals": _normals, "fpfh": _fpfh, "fpfh_variation": _fpfh_variation,
          "nn_search": _nn_search}


def _child(lib_path, inp, out):
    lib = ctypes.CDLL(lib_path)
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
    lib.emu_live_temp.restype = ctypes.c_long
    lib.emu_knn_dist_evals_take.restype = ctypes.c_int64
    lib.emu_nn_candidate_count.restype = ctypes.c_int64
    with open(inp, "rb") as f:
        calls = pickle.load(f)
    results = []
    for name, kwargs in calls:
        results.append(_CALLS[name](lib, **kwargs))
        if lib.emu_live_temp() != 0:
            sys.exit(f"CUDA-EMU ERROR: {name} left {lib.emu_live_temp()} temp_alloc blocks unfreed")
    with open(out, "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    _child(*sys.argv[1:])
