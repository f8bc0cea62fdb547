"""The pipeline's one door to group3ad_ext: numpy/torch conversion around each op it uses.

Clouds travel through the pipeline as float64 numpy arrays (what readers and Open3D use);
kernels run on float32 torch tensors on the model's device. Keeping every call here means the
pipeline has one place that knows the ops' signatures.
"""

from __future__ import annotations

import numpy as np
import torch

import group3ad_ext

from . import _fallbacks


def _op(name):
    return getattr(group3ad_ext, name, None) or getattr(_fallbacks, name)


def memory_bank_class():
    try:
        from .memory_bank import MemoryBank
    except ImportError:
        MemoryBank = _fallbacks.MemoryBank
    return MemoryBank


def as_tensor(points, device="cpu", dtype=torch.float32) -> torch.Tensor:
    if isinstance(points, torch.Tensor):
        return points.to(device=device, dtype=dtype).contiguous()
    return torch.from_numpy(np.ascontiguousarray(points)).to(device=device, dtype=dtype)


def point_spacing(points) -> float:
    """Mean nearest-neighbour distance of the cloud (its sampling density, in its units)."""
    return float(_op("point_spacing")(as_tensor(points)))


def fps(points, n: int, device="cpu") -> np.ndarray:
    """(n,) indices of exact farthest point sampling started at point 0."""
    n = min(int(n), len(points))
    return _op("fps")(as_tensor(points, device), n).cpu().numpy()


def agcs(points, n: int, alpha: float, device="cpu") -> np.ndarray:
    """(n,) AGCS centre indices: alpha*n by FPS over the high-FPFH-variation points, the rest
    by FPS over the whole cloud (paper, Algorithm 2)."""
    n = min(int(n), len(points))
    return _op("agcs")(as_tensor(points, device), n, alpha=alpha).cpu().numpy()


def normals(points, radius: float, max_nn: int) -> np.ndarray:
    return _op("normals")(as_tensor(points, dtype=torch.float64), radius=radius,
                                max_nn=max_nn).numpy()


def fpfh(points, normals_, radius: float, max_nn: int, indices=None) -> np.ndarray:
    """(N,33) or (len(indices),33) FPFH descriptors, Open3D's definition."""
    idx = None if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.int64)
    return _op("fpfh")(as_tensor(points, dtype=torch.float64),
                             as_tensor(normals_, dtype=torch.float64), radius=radius,
                             max_nn=max_nn, indices=idx).numpy()


def nearest(query, points, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """For each query point its nearest point in ``points`` (3-D, exact): (dist (M,), idx (M,))."""
    d2, idx = _op("knn")(as_tensor(query, device), as_tensor(points, device), 1)
    return d2[:, 0].clamp_min(0).sqrt().cpu().numpy().astype(np.float64), idx[:, 0].cpu().numpy()


def knn(query, points, k: int, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """(dist (M,k), idx (M,k)) exact 3-D k nearest neighbours, ascending."""
    d2, idx = _op("knn")(as_tensor(query, device), as_tensor(points, device), int(k))
    return d2.clamp_min(0).sqrt().cpu().numpy().astype(np.float64), idx.cpu().numpy()


def coreset(features: torch.Tensor, n: int, proj_dim: int = 128, seed: int = 0) -> torch.Tensor:
    """(n,) indices of the greedy coreset of ``features`` (all of them when n >= len)."""
    if n >= features.shape[0]:
        return torch.arange(features.shape[0])
    return _op("coreset")(features, int(n), proj_dim=proj_dim, seed=seed).cpu()


def nn_search(queries: torch.Tensor, bank: torch.Tensor, k: int = 1):
    """(dist (Q,k) Euclidean, idx (Q,k)) of each query's nearest bank rows."""
    return _op("nn_search")(queries, bank, k=k)


def group(points: torch.Tensor, center_idx: torch.Tensor, k: int):
    """(neighbourhood (G,k,3) relative to the centres, idx (G,k)) of the k nearest points of
    each centre (the centre itself first)."""
    return _op("group")(points, center_idx, k)
