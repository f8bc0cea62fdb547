"""Groups of a whole cloud: FPS centres + the k nearest points of each centre.

Uses the exact ``group3ad_ext.fps`` / ``group3ad_ext.group`` ops (ties to the lowest index), on the
points' device.
"""

from __future__ import annotations

import torch

import group3ad_ext

def make_groups(points: torch.Tensor, n_groups: int = 4096, group_size: int = 128,
                center_idx: torch.Tensor | None = None, start_idx: int = 0):
    """Split a whole cloud into overlapping groups.

    Args:
        points: (N,3) float32/float64 cloud (full resolution; nothing is subsampled).
        n_groups: G, number of FPS centres (ignored when ``center_idx`` is given).
        group_size: k, points per group (the centre itself is its own nearest point).
        center_idx: optional (G,) int64 centre indices (e.g. from AGCS); FPS when None.
        start_idx: FPS seed point.

    Returns ``(neighborhood (G,k,3) relative to the centres, center (G,3), center_idx (G,),
    idx (G,k) int64 indices into points)``.
    """
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be an (N,3) tensor; got "
                         f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    n = points.shape[0]
    if not 1 <= group_size <= n:
        raise ValueError(f"group_size must be in [1, {n}] (the number of points); got {group_size}")
    if center_idx is None:
        if not 1 <= n_groups <= n:
            raise ValueError(f"n_groups must be in [1, {n}] (the number of points); got {n_groups}")
        if not 0 <= start_idx < n:
            raise ValueError(f"start_idx must be in [0, {n}); got {start_idx}")
        center_idx = farthest_point_sample(points, n_groups, start_idx)
    else:
        if not isinstance(center_idx, torch.Tensor) or center_idx.dim() != 1 or center_idx.numel() < 1:
            raise ValueError("center_idx must be a non-empty 1-D int64 tensor")
        center_idx = center_idx.to(device=points.device, dtype=torch.long)
        if int(center_idx.min()) < 0 or int(center_idx.max()) >= n:
            raise ValueError(f"center_idx must index points, i.e. lie in [0, {n})")
    neighborhood, idx = group_points(points, center_idx, group_size)
    return neighborhood, points[center_idx], center_idx, idx


def farthest_point_sample(points: torch.Tensor, n_samples: int, start_idx: int = 0) -> torch.Tensor:
    """(n_samples,) int64 exact FPS indices (group3ad_ext.fps), ties to the lowest index."""
    return group3ad_ext.fps(points, n_samples, start_idx=start_idx)


def group_points(points: torch.Tensor, center_idx: torch.Tensor, k: int):
    """(neighbourhoods (M,k,3) relative to centres, idx (M,k)) from group3ad_ext.group: column 0
    is the centre itself, the other k-1 follow in ascending distance, ties to the lower index."""
    return group3ad_ext.group(points, center_idx, k)
