"""The pipeline's one door to group3ad_ext: numpy/torch conversion around each op it uses.

Clouds travel through the pipeline as float64 numpy arrays (what readers and Open3D use);
kernels run on float32 torch tensors on the model's device (float64 for normals/FPFH, whose
angles need it). Keeping every call here gives the pipeline one place that knows the ops.
"""

from __future__ import annotations

import numpy as np
import torch

import group3ad_ext


def as_tensor(points, device="cpu", dtype=torch.float32) -> torch.Tensor:
    if isinstance(points, torch.Tensor):
        return points.to(device=device, dtype=dtype).contiguous()
    return torch.from_numpy(np.ascontiguousarray(points)).to(device=device, dtype=dtype)


def point_spacing(points) -> float:
    """Median nearest-distinct-neighbour distance (the cloud's sampling density, its units)."""
    return float(group3ad_ext.point_spacing(as_tensor(points)))


def fps(points, n: int, device="cpu") -> np.ndarray:
    """(n,) indices of exact farthest point sampling started at point 0."""
    n = min(int(n), len(points))
    return group3ad_ext.fps(as_tensor(points, device), n).cpu().numpy()


def agcs(points, n: int, alpha: float, device="cpu") -> np.ndarray:
    """(n,) AGCS centre indices: round(alpha*n) by FPS over the high-FPFH-variation points,
    the rest by FPS over the whole cloud (paper, Algorithm 2; radii: group3ad_ext defaults)."""
    n = min(int(n), len(points))
    return group3ad_ext.agcs(as_tensor(points, device), n, alpha=alpha).cpu().numpy()


def normals(points, radius: float, max_nn: int) -> np.ndarray:
    return group3ad_ext.normals(as_tensor(points, dtype=torch.float64), radius=radius,
                                max_nn=max_nn).numpy()


def fpfh(points, normals_, radius: float, max_nn: int, indices=None) -> np.ndarray:
    """(N,33) or (len(indices),33) FPFH descriptors, Open3D's definition."""
    idx = None if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.int64)
    return group3ad_ext.fpfh(as_tensor(points, dtype=torch.float64),
                             as_tensor(normals_, dtype=torch.float64), radius=radius,
                             max_nn=max_nn, indices=idx).numpy()


def knn(query, points, k: int, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """(dist (M,k), idx (M,k)) exact 3-D k nearest neighbours, ascending, ties to the lower
    index."""
    d2, idx = group3ad_ext.knn(as_tensor(query, device), as_tensor(points, device), int(k))
    return d2.clamp_min(0).sqrt().cpu().numpy().astype(np.float64), idx.cpu().numpy()


def nearest(query, points, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Each query point's nearest point in ``points`` (3-D, exact): (dist (M,), idx (M,))."""
    d, idx = knn(query, points, 1, device)
    return d[:, 0], idx[:, 0]


def coreset(features: torch.Tensor, n: int, proj_dim: int | None = 128, seed: int = 0) -> torch.Tensor:
    """(n,) row indices of the greedy k-center coreset (all rows when n >= len)."""
    if n >= features.shape[0]:
        return torch.arange(features.shape[0], device=features.device)
    if proj_dim is not None and proj_dim >= features.shape[1]:
        proj_dim = None
    return group3ad_ext.coreset(features, int(n), proj_dim=proj_dim, seed=seed)


def nn_search(queries: torch.Tensor, bank: torch.Tensor, k: int = 1):
    """(dist (Q,k) Euclidean float32, idx (Q,k)) of each query's nearest bank rows."""
    return group3ad_ext.nn_search(queries, bank.to(queries.device), k=k)


def group(points: torch.Tensor, center_idx: torch.Tensor, k: int):
    """(neighbourhood (G,k,3) relative to the centres, idx (G,k)) of the k nearest points of
    each centre."""
    return group3ad_ext.group(points, center_idx, k)
