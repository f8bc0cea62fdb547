"""IUN and IAN losses (paper eqs. 9-14), differentiable through the group features.

Cluster assignments come from k-means on detached features and stay fixed within a step; the
cluster centres are recomputed from the live features (mean of each cluster's rows), so the
gradient reaches the encoder. Zero distances are guarded: distances pass through
sqrt(max(d^2, eps^2)), so 1/min_dist is finite and has a finite gradient even for coincident
centres.
"""

from __future__ import annotations

import torch


def cluster_centers(features: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(K,D) mean feature of each cluster (differentiable in features). Empty clusters give 0."""
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be (N,D) and labels (N,); got {tuple(features.shape)}, {tuple(labels.shape)}")
    sums = torch.zeros(k, features.shape[1], dtype=features.dtype, device=features.device)
    sums = sums.index_add(0, labels, features)
    counts = torch.bincount(labels, minlength=k).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]


def iun_loss(centers: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eqs. 9-11: 1 / min_{i<j} ||C_i - C_j||_2 over the K >= 2 cluster centres (K,D)."""
    if centers.dim() != 2 or centers.shape[0] < 2:
        raise ValueError(f"centers must be (K,D) with K >= 2; got {tuple(centers.shape)}")
    k = centers.shape[0]
    iu = torch.triu_indices(k, k, offset=1, device=centers.device)
    diff = centers[iu[0]] - centers[iu[1]]
    dist = torch.sqrt((diff * diff).sum(-1).clamp_min(eps * eps))
    return 1.0 / dist.min()


def ian_loss(features: torch.Tensor, labels: torch.Tensor, k: int, temperature: float = 1.0) -> torch.Tensor:
    """Eqs. 12-14: T / K * sum_k (max pairwise distance within cluster k)^2.

    features (N,D), labels (N,) in [0, K). A cluster with fewer than two members contributes 0.
    The farthest pair is found with a Gram-matrix expansion; its squared distance is then
    recomputed as ||a - b||^2 so value and gradient are exact. The square removes the sqrt, so
    a zero maximum distance has a zero (finite) gradient.
    """
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be (N,D) and labels (N,); got {tuple(features.shape)}, {tuple(labels.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    total = features.new_zeros(())
    detached = features.detach().double()
    for c in range(k):
        members = (labels == c).nonzero().flatten()
        if members.numel() < 2:
            continue
        f = detached[members]
        sq = (f * f).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * f @ f.T
        flat = int(torch.argmax(d2))
        i, j = members[flat // members.numel()], members[flat % members.numel()]
        diff = features[i] - features[j]
        total = total + (diff * diff).sum()
    return total * (temperature / k)
