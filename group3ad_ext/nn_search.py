"""Exact nearest-neighbour search of query features in a memory bank (PatchCore / Reg3D-AD /
Group3AD anomaly scoring)."""

from __future__ import annotations

import torch

from . import _checks
from ._loader import _C  # noqa: F401  (registers torch.ops.group3ad_ext.*)

__all__ = ["nn_search"]

NN_SEARCH_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def nn_search(queries: torch.Tensor, bank: torch.Tensor, k: int = 1):
    """Exact k nearest bank rows of every query row, by Euclidean distance.

    Args:
        queries: (Q, D) float32, float16, bfloat16 or float64 tensor (Q may be 0), CPU or CUDA.
        bank: (B, D) tensor of the same dtype and device, B >= 1.
        k: number of neighbours, 1 <= k <= B.

    Returns:
        dist: (Q, k) float32 Euclidean distances (NOT squared: PatchCore scores with the plain
            distance; square them for faiss IndexFlatL2 compatibility), ascending per row.
        idx: (Q, k) int64 bank row indices; equal distances go to the lower index.

    Exactness. Candidates come from a float32 search (CPU: a GEMM of the expansion
    |q|^2 + |b|^2 - 2 q.b on rows centred on the bank mean; CUDA: fused tiles of direct
    differences); the candidates are then re-ranked by float64 sums of (q_i - b_i)^2 on the
    original values, and a rounding-error bound proves per query that no other row can be
    closer (queries it cannot certify, e.g. many exact duplicates, are brute-forced in float64).
    So idx equals a float64 brute force with lowest-index ties (up to float64 rounding, 1e-15
    relative, of near-ties), dist is the float64 distance rounded once to float32 (relative
    error <= 2^-24), a query equal to a bank row gets exactly 0, and nothing is negative;
    large common offsets (e.g. +1e4 on every coordinate) cost no accuracy.
    float16 / bfloat16 inputs are widened exactly; all arithmetic is float32 / float64.

    Memory (CPU), besides the inputs and the (Q, k) outputs: the centred float32 bank
    4*B*D bytes, one float32 score tile 4*1024*4096 = 16 MiB, the float32 query tile
    4*1024*D and the candidate lists 16*1024*(k + max(16, k//8)) bytes: for Q = 1e6, B = 1e5,
    D = 1152 about 480 MiB instead of a 400 GB Q x B matrix. CUDA: candidate lists 12*Q*m
    bytes; no Q x B matrix (k > 48 uses float64 brute force in row chunks of <= 256 MiB).

    Speed: keep ``torch.get_float32_matmul_precision()`` at "highest" on the CPU; with a
    reduced precision the bound must assume bf16 inputs and more queries take the slow exact
    path (results stay exact).
    """
    _checks.check_tensor(queries, "queries")
    _checks.check_tensor(bank, "bank")
    _checks.check_device(queries, "queries")
    _checks.check_device(bank, "bank")
    if queries.dim() != 2:
        raise ValueError(f"queries must have shape (Q,D); got {tuple(queries.shape)}")
    if bank.dim() != 2:
        raise ValueError(f"bank must have shape (B,D); got {tuple(bank.shape)}")
    _checks.check_float(queries, "queries", NN_SEARCH_DTYPES)
    _checks.check_float(bank, "bank", NN_SEARCH_DTYPES)
    if bank.dtype != queries.dtype:
        raise ValueError(f"bank has dtype {bank.dtype} but queries have {queries.dtype}; convert one")
    _checks.check_same_device(("queries", queries), ("bank", bank))
    if bank.shape[0] == 0:
        raise ValueError(f"bank is empty (shape {tuple(bank.shape)}); need at least one row")
    if bank.shape[1] == 0:
        raise ValueError(f"bank must have D >= 1 columns; got shape {tuple(bank.shape)}")
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"queries have D={queries.shape[1]} columns but bank has D={bank.shape[1]}; "
            "feature dimensions must match"
        )
    k = _checks.check_int(k, "k", low=1, high=bank.shape[0])
    _checks.check_finite(queries, "queries")
    _checks.check_finite(bank, "bank")
    return torch.ops.group3ad_ext.nn_search(queries, bank, k)


@torch.library.register_fake("group3ad_ext::nn_search")
def _nn_search_fake(queries, bank, k):
    q = queries.shape[0]
    return (queries.new_empty((q, k), dtype=torch.float32),
            queries.new_empty((q, k), dtype=torch.int64))
