"""Groups of a whole cloud: FPS centres + the k nearest points of each centre.

Uses the exact ``group3ad_ext.fps`` / ``group3ad_ext.group`` ops (ties to the lowest index). While
a checkout lacks them (they land from separate branches), a pure-torch implementation of the same
definitions is used; it gives the same indices (same tie rule), only slower.
"""

from __future__ import annotations

import torch

import group3ad_ext

_CDIST_BLOCK = 256  # centres per block in the torch k-NN (bounds its memory to 256 x N floats)


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
    """(n_samples,) int64 exact FPS indices, ties to the lowest index."""
    op = getattr(group3ad_ext, "fps", None)
    if op is not None:
        return op(points, n_samples, start_idx=start_idx)
    n = points.shape[0]
    out = torch.empty(n_samples, dtype=torch.long, device=points.device)
    mind = torch.full((n,), float("inf"), dtype=points.dtype, device=points.device)
    cur = int(start_idx)
    for i in range(n_samples):
        out[i] = cur
        d = ((points - points[cur]) ** 2).sum(-1)
        torch.minimum(mind, d, out=mind)
        cur = int(torch.argmax(mind))  # argmax returns the first maximum: lowest index
    return out


def group_points(points: torch.Tensor, center_idx: torch.Tensor, k: int):
    """(neighbourhoods (M,k,3) relative to centres, idx (M,k)); neighbours sorted by distance,
    ties to the lower index."""
    op = getattr(group3ad_ext, "group", None)
    if op is not None:
        return op(points, center_idx, k)
    centers = points[center_idx]
    idx = torch.empty(centers.shape[0], k, dtype=torch.long, device=points.device)
    ar = torch.arange(points.shape[0], device=points.device)
    for s in range(0, centers.shape[0], _CDIST_BLOCK):
        c = centers[s:s + _CDIST_BLOCK]
        d2 = ((c[:, None, :] - points[None, :, :]) ** 2).sum(-1)          # (b,N), exact diff form
        cand = torch.topk(d2, k, dim=1, largest=False, sorted=True).indices
        # re-sort the k candidates by (distance, index) so ties go to the lower index
        kth = d2.gather(1, cand[:, -1:])
        for r in range(c.shape[0]):
            inside = (d2[r] <= kth[r]).nonzero().squeeze(1)
            key = d2[r, inside]
            order = torch.argsort(key, stable=True)  # inside is ascending in index: stable = lowest index first
            idx[s + r] = ar[inside[order[:k]]]
    neighborhood = points[idx] - centers[:, None, :]
    return neighborhood, idx
