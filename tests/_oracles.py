"""Naive reference implementations: plain PyTorch loops over the definitions, written
independently of the kernels (no spatial index, no pruning, no tiling), used as oracles.

Squared distances are evaluated exactly as the definitions fix them: ((dx*dx + dy*dy) + dz*dz)
in the points' dtype, each operation rounded separately (PyTorch's elementwise ops never fuse
a multiply-add), so exact kernels must agree with these bit for bit.
"""

from __future__ import annotations

import math

import torch


def sqdist(points: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(N,3) x (3,) -> (N,) squared distances, ((dx*dx + dy*dy) + dz*dz) in points' dtype."""
    d = points - c
    return d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]


def sqdist_matrix(query: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(M,3) x (N,3) -> (M,N), same evaluation order as sqdist."""
    d = query[:, None, :] - points[None, :, :]
    return d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]


def fps(points: torch.Tensor, n_samples: int, seeds=(0,)) -> torch.Tensor:
    """Exact FPS, ties to the lowest index, chosen points never picked again."""
    pts = points.contiguous()
    n = pts.shape[0]
    chosen = list(seeds)
    mind = torch.full((n,), math.inf, dtype=pts.dtype)
    for s in chosen:
        mind = torch.minimum(mind, sqdist(pts, pts[s]))
    taken = torch.zeros(n, dtype=torch.bool)
    taken[list(chosen)] = True
    while len(chosen) < n_samples:
        cand = torch.where(taken, torch.full_like(mind, -math.inf), mind)
        nxt = int(torch.argmax(cand))  # first maximal value: the lowest index
        chosen.append(nxt)
        taken[nxt] = True
        mind = torch.minimum(mind, sqdist(pts, pts[nxt]))
    return torch.tensor(chosen, dtype=torch.int64)


def fps_features(features: torch.Tensor, n_samples: int, start: int = 0) -> torch.Tensor:
    """Greedy k-center in feature space: squared distance summed over dimensions in order."""
    f = features.contiguous()
    n = f.shape[0]

    def d2(c):
        diff = f - f[c]
        acc = diff[:, 0] * diff[:, 0]
        for j in range(1, f.shape[1]):
            acc = acc + diff[:, j] * diff[:, j]
        return acc

    chosen = [start]
    mind = d2(start)
    taken = torch.zeros(n, dtype=torch.bool)
    taken[start] = True
    while len(chosen) < n_samples:
        cand = torch.where(taken, torch.full_like(mind, -math.inf), mind)
        nxt = int(torch.argmax(cand))
        chosen.append(nxt)
        taken[nxt] = True
        mind = torch.minimum(mind, d2(nxt))
    return torch.tensor(chosen, dtype=torch.int64)


def knn(query: torch.Tensor, points: torch.Tensor, k: int):
    """(M,k) squared distances and indices, ascending, ties to the lower index."""
    d2 = sqdist_matrix(query.contiguous(), points.contiguous())
    vals, idx = torch.sort(d2, dim=1, stable=True)
    return vals[:, :k], idx[:, :k]


def group_idx(points: torch.Tensor, centers: torch.Tensor, k: int) -> torch.Tensor:
    """Each centre first, then its k-1 nearest other points (ascending, lower index on ties)."""
    pts = points.contiguous()
    out = []
    for c in centers.tolist():
        d2 = sqdist(pts, pts[c])
        d2[c] = math.inf
        order = torch.sort(d2, stable=True).indices[: k - 1]
        out.append(torch.cat([torch.tensor([c]), order]))
    return torch.stack(out) if out else torch.empty(0, k, dtype=torch.int64)


def hybrid_neighbours(points: torch.Tensor, i: int, radius, max_nn: int) -> torch.Tensor:
    """Indices of the max_nn nearest points of point i (itself included), restricted to
    distance < radius when a radius is given; ascending, lower index on ties."""
    d2 = sqdist(points.contiguous(), points[i])
    vals, order = torch.sort(d2, stable=True)
    vals, order = vals[:max_nn], order[:max_nn]
    if radius is not None:
        order = order[vals.double() < float(radius) ** 2]
    return order


def pca_normal(points: torch.Tensor, nbrs: torch.Tensor):
    """Eigenvector of the smallest eigenvalue of the neighbourhood covariance (double), and the
    eigenvalues ascending."""
    q = points[nbrs].double()
    c = q - q.mean(dim=0)
    cov = c.t() @ c / q.shape[0]
    w, v = torch.linalg.eigh(cov)
    return v[:, 0], w


def fpfh_variation(points: torch.Tensor, features: torch.Tensor, k: int) -> torch.Tensor:
    """F_p = sum over the k nearest other points (by index; ties to the lower index) of
    ||f(p) - f(n)||_2, in double."""
    pts = points.contiguous()
    f = features.double()
    n = pts.shape[0]
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        d2 = sqdist(pts, pts[i])
        d2[i] = math.inf
        order = torch.sort(d2, stable=True).indices[: min(k, n - 1)]
        out[i] = (f[order] - f[i]).norm(dim=1).sum()
    return out


def nn_search(queries: torch.Tensor, bank: torch.Tensor):
    """(Q,B) float64 Euclidean distances, summing squared differences in dimension order."""
    q = queries.double()
    b = bank.double()
    diff = q[:, None, :] - b[None, :, :]
    acc = diff[..., 0] * diff[..., 0]
    for j in range(1, q.shape[1]):
        acc = acc + diff[..., j] * diff[..., j]
    return acc.sqrt()
