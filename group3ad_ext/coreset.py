"""Greedy k-center coreset (PatchCore's memory-bank subsampling) as one compiled loop."""

from __future__ import annotations

import math
import numbers

import torch

from . import _checks

__all__ = ["coreset", "random_projection", "auto_start_index"]

CORESET_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
AUTO_START_ANCHORS = 10


def random_projection(features: torch.Tensor, proj_dim: int | None, seed: int = 0) -> torch.Tensor:
    """Seeded Gaussian random projection used by :func:`coreset`.

    Args:
        features: (N, D) floating tensor.
        proj_dim: target dimension, or None. None or proj_dim >= D: no projection.
        seed: seeds the projection matrix.

    Returns:
        (N, proj_dim) (or (N, D) without projection) float32 tensor (float64 stays float64),
        ``features @ W`` with W (D, proj_dim) i.i.d. N(0, 1/proj_dim) drawn by a CPU
        torch.Generator seeded with `seed` and then moved to the features' device, so the same
        seed gives the same W on every device.
    """
    x = features if features.dtype == torch.float64 else features.float()
    d = x.shape[1]
    if proj_dim is None or proj_dim >= d:
        return x.contiguous()
    g = torch.Generator().manual_seed(int(seed))
    w = torch.randn(d, proj_dim, generator=g, dtype=torch.float64) / math.sqrt(proj_dim)
    return (x @ w.to(device=x.device, dtype=x.dtype)).contiguous()


def auto_start_index(z: torch.Tensor, seed: int = 0, anchors: int = AUTO_START_ANCHORS) -> int:
    """PatchCore's first pick: the row with the largest mean Euclidean distance to `anchors`
    rows drawn without replacement by a CPU generator seeded with `seed` (lowest index on
    ties). z: (N, P) projected features."""
    n = z.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(n, generator=g)[: min(anchors, n)].tolist()
    z64 = z.double()
    total = torch.zeros(n, dtype=torch.float64, device=z.device)
    for a in pick:  # one anchor at a time: O(N) memory
        total += (z64 - z64[a]).pow(2).sum(-1).sqrt()
    return int(torch.argmax(total))  # torch.argmax returns the first maximum


def coreset(features: torch.Tensor, n_select: int, proj_dim: int | None = 128,
            start_idx: int | str = 0, seed: int = 0) -> torch.Tensor:
    """Greedy k-center coreset (PatchCore): farthest point sampling in feature space.

    Args:
        features: (N, D) float32 / float64 / float16 / bfloat16 tensor, CPU or CUDA, finite.
        n_select: rows to select, 1 <= n_select <= N.
        proj_dim: first project the features to this many dimensions with a seeded Gaussian
            random projection (:func:`random_projection`, as PatchCore does to make the greedy
            loop cheap); None, or proj_dim >= D: select on the features themselves.
        start_idx: the first selected row (int in [0, N)), or "auto": PatchCore's first pick,
            the row with the largest mean distance to 10 seeded random rows
            (:func:`auto_start_index`).
        seed: seeds the projection and the "auto" anchors.

    Returns:
        (n_select,) int64 row indices on the features' device, in selection order. The start
        row is always the first entry (anomalib's KCenterGreedy leaves it out); each next row
        is the one whose squared Euclidean distance (in the projected space) to its nearest
        selected row is largest, ties to the lowest index. After a row is picked its distance
        is 0, so duplicates are only picked once all distinct rows are covered.

    The whole loop runs in one compiled op (``group3ad_ext.fps``): no host round trip per
    step. Projection: a float32 matmul (float64 for float64 features), so CPU and CUDA can
    differ where two rows are within rounding of each other.
    """
    _checks.check_points(features, "features", dims=(2,), last=None, dtypes=CORESET_DTYPES)
    n, d = features.shape
    if d == 0:
        raise ValueError(f"features must have at least one column; got shape {tuple(features.shape)}")
    n_select = _checks.check_int(n_select, "n_select", low=1, high=n)
    if proj_dim is not None:
        proj_dim = _checks.check_int(proj_dim, "proj_dim", low=1)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}")
    if isinstance(start_idx, str):
        if start_idx != "auto":
            raise ValueError(f"start_idx must be an int in [0, {n}) or 'auto'; got {start_idx!r}")
    else:
        start_idx = _checks.check_int(start_idx, "start_idx", low=0, high=n - 1)

    z = random_projection(features, proj_dim, seed)
    if start_idx == "auto":
        start_idx = auto_start_index(z, seed)

    from .fps import fps_features  # the shared FPS machinery, any dimension

    return fps_features(z, n_select, start_idx=start_idx)
