"""Exact k-nearest neighbours in 3D and Point-MAE-style grouping.

``knn`` returns the k nearest points of every query, sorted ascending by squared distance with
ties to the lower point index, on CPU (a Morton-ordered bounding-volume tree, all cores) and
CUDA (a uniform grid with ring search; a tiled exact search for very large k). Memory stays
O((M + N) k): no M x N distance matrix is ever formed. Any k up to the number of points.
"""

from __future__ import annotations

import torch

from . import _loader  # noqa: F401  (registers torch.ops.group3ad_ext.*)
from ._checks import check_device, check_int, check_points, check_same_device, check_tensor

__all__ = ["knn", "group"]


def _batched(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 2 else x


def _lengths(lengths, name: str, batch: int, size: int, low: int, device) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), size, dtype=torch.int64, device=device)
    check_tensor(lengths, name)
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},); got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor; got {str(lengths.dtype).replace('torch.', '')}")
    if lengths.device != device:
        raise ValueError(f"{name} is on {lengths.device} but the points are on {device}")
    if lengths.device.type != "meta" and batch:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < low or hi > size:
            raise ValueError(f"{name} must lie in [{low}, {size}]; got min {lo}, max {hi}")
    return lengths.to(torch.int64).contiguous()


def knn(query: torch.Tensor, points: torch.Tensor, k: int, query_lengths: torch.Tensor | None = None,
        point_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of every query point among ``points``.

    Args:
        query: (M,3) or (B,M,3) float32/float64, finite.
        points: (N,3) or (B,N,3), same dtype, device and number of dimensions as ``query``.
        k: 1 <= k <= the smallest point length (N without ``point_lengths``).
        query_lengths: optional (B,) integer tensor, each in [0, M]: rows at or past
            ``query_lengths[b]`` are padding (batched input only).
        point_lengths: optional (B,) integer tensor, each in [1, N]: cloud b is
            ``points[b, :point_lengths[b]]`` (batched input only).

    Returns:
        dist2: (M,k) or (B,M,k), squared Euclidean distances in the points' dtype, ascending.
        idx: (M,k) or (B,M,k) int64 indices into (that batch's) ``points``; equal distances are
        ordered by lower index. Padding query rows get dist2 = inf and idx = -1.

    Distances are evaluated as ((dx*dx + dy*dy) + dz*dz) without fused multiply-add, so CPU
    and CUDA return the same bits. Raises ValueError for bad arguments, before any kernel runs.
    """
    check_points(query, "query")
    check_points(points, "points")
    if query.dim() != points.dim():
        raise ValueError(f"query and points must both be unbatched (N,3) or both batched (B,N,3); "
                         f"got query {tuple(query.shape)} and points {tuple(points.shape)}")
    if query.dtype != points.dtype:
        raise ValueError(f"query has dtype {query.dtype} but points has {points.dtype}; use one float dtype")
    check_same_device(("points", points), ("query", query))
    unbatched = points.dim() == 2
    if unbatched and (query_lengths is not None or point_lengths is not None):
        raise ValueError("query_lengths/point_lengths need batched (B,M,3)/(B,N,3) inputs")
    q, p = _batched(query), _batched(points)
    if q.shape[0] != p.shape[0]:
        raise ValueError(f"query has batch size {q.shape[0]} but points has {p.shape[0]}")
    B, M, N = p.shape[0], q.shape[1], p.shape[1]
    ql = _lengths(query_lengths, "query_lengths", B, M, 0, p.device)
    pl = _lengths(point_lengths, "point_lengths", B, N, 1, p.device)
    kmax = int(pl.min()) if (point_lengths is not None and p.device.type != "meta" and B) else N
    k = check_int(k, "k", 1, kmax)
    dist2, idx = torch.ops.group3ad_ext.knn(q.contiguous(), p.contiguous(), ql, pl, k)
    if unbatched:
        return dist2[0], idx[0]
    return dist2, idx


def group(points: torch.Tensor, center_idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-MAE-style grouping: the k nearest points of each centre, relative to that centre.

    Args:
        points: (N,3) or (B,N,3) float32/float64, finite.
        center_idx: (M,) or (B,M) integer indices into (that batch's) ``points`` (e.g. from FPS).
        k: group size, 1 <= k <= N.

    Returns:
        neighbourhoods: (M,k,3) or (B,M,k,3), neighbour coordinates minus their centre's.
        idx: (M,k) or (B,M,k) int64 neighbour indices. Column 0 is always the centre itself
        (offset 0), even where duplicate points share its position; the other k-1 follow in
        ascending distance, ties to the lower index.
    """
    check_points(points, "points")
    check_tensor(center_idx, "center_idx")
    check_device(center_idx, "center_idx")
    if center_idx.dim() != points.dim() - 1:
        want = "(M,)" if points.dim() == 2 else "(B,M)"
        raise ValueError(f"center_idx must have shape {want} for points {tuple(points.shape)}; "
                         f"got {tuple(center_idx.shape)}")
    if center_idx.dtype.is_floating_point or center_idx.dtype.is_complex or center_idx.dtype == torch.bool:
        raise ValueError(f"center_idx must be an integer tensor; got {str(center_idx.dtype).replace('torch.', '')}")
    check_same_device(("points", points), ("center_idx", center_idx))
    unbatched = points.dim() == 2
    p = _batched(points)
    c = (center_idx.unsqueeze(0) if unbatched else center_idx).to(torch.int64)
    if c.shape[0] != p.shape[0]:
        raise ValueError(f"center_idx has batch size {c.shape[0]} but points has {p.shape[0]}")
    if c.shape[1] == 0:
        raise ValueError("center_idx is empty; need at least one centre")
    N = p.shape[1]
    if c.device.type != "meta" and (int(c.min()) < 0 or int(c.max()) >= N):
        raise ValueError(f"center_idx must lie in [0, {N - 1}]; got min {int(c.min())}, max {int(c.max())}")
    k = check_int(k, "k", 1, N)
    centres = torch.gather(p, 1, c.unsqueeze(-1).expand(-1, -1, 3))
    _, nn = knn(centres, p, k)
    # Put the centre first and drop its own later occurrence (or, where k duplicates with lower
    # indices crowded it out, the last neighbour): stable sort on (removed, column).
    cand = torch.cat([c.unsqueeze(-1), nn], dim=-1)
    removed = torch.cat([torch.zeros_like(c, dtype=torch.bool).unsqueeze(-1), nn == c.unsqueeze(-1)], dim=-1)
    col = torch.arange(k + 1, device=p.device).expand_as(cand)
    key = torch.where(removed, torch.full_like(col, k + 1), col)
    order = torch.argsort(key, dim=-1, stable=True)[..., :k]
    idx = torch.gather(cand, -1, order)
    B, M = c.shape
    nb = torch.gather(p, 1, idx.reshape(B, M * k, 1).expand(-1, -1, 3)).reshape(B, M, k, 3)
    nb = nb - centres.unsqueeze(2)
    if unbatched:
        return nb[0], idx[0]
    return nb, idx


@torch.library.register_fake("group3ad_ext::knn")
def _knn_fake(query, points, query_lengths, point_lengths, k):
    B, M = query.shape[0], query.shape[1]
    return (points.new_empty((B, M, k)), points.new_empty((B, M, k), dtype=torch.int64))
