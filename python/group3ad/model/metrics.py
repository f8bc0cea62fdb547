"""Feature-space uniformity and alignment: what IUN and IAN are meant to change.

``feature_distribution(features, labels)`` reports, for group features (N,D) and a clustering:
- ``min_center_distance``: min_{i<j} ||C_i - C_j|| (eq. 10; IUN raises it), raw feature units;
- ``mean_intra_spread``: mean distance of a feature to its cluster centre (IAN lowers it);
- ``mean_max_intra_distance``: mean over clusters of the largest pairwise distance (eq. 13);
- ``separation_ratio``: min_center_distance / mean_intra_spread (scale-free);
- ``uniformity``: Wang & Isola (ICML 2020) log E_{x != y} exp(-2 ||x - y||^2) over all pairs of
  L2-normalised features (lower = more uniform on the sphere);
- ``alignment``: Wang & Isola's alignment E ||x - y||^2 (alpha = 2) on L2-normalised features,
  with the positive pairs being pairs of the same cluster (lower = better aligned).
The normalised measures are immune to a plain rescaling of the features, which the raw
distances are not; report both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .kmeans import kmeans, kmeans_elbow
from .losses import cluster_centers


@torch.no_grad()
def feature_distribution(features: torch.Tensor, labels: torch.Tensor | None = None, k: int | None = None,
                         k_max: int = 10, seed: int = 0) -> dict:
    """Metrics above for features (N,D). Without labels, k-means (elbow unless k is given)."""
    x = features.detach().double()
    if labels is None:
        res = kmeans(x, k, seed=seed) if k else kmeans_elbow(x, k_max=k_max, seed=seed)[0]
        labels = res.labels
    k = int(labels.max()) + 1
    centers = cluster_centers(x, labels, k)
    present = torch.bincount(labels, minlength=k) > 0
    c = centers[present]
    cd = torch.cdist(c, c)
    cd.fill_diagonal_(float("inf"))
    spread = (x - centers[labels]).norm(dim=1).mean()
    max_intra = []
    for j in range(k):
        m = x[labels == j]
        if m.shape[0] >= 2:
            max_intra.append(float(torch.cdist(m, m).max()))
    z = F.normalize(x, dim=1)
    pd2 = torch.cdist(z, z).pow(2)
    n = z.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    uniformity = float(torch.logsumexp(-2.0 * pd2[off], 0) - math.log(off.sum().item()))
    same = (labels[:, None] == labels[None, :]) & off
    alignment = float(pd2[same].mean()) if same.any() else 0.0
    mcd = float(cd.min()) if c.shape[0] >= 2 else float("nan")
    return {
        "k": k,
        "min_center_distance": mcd,
        "mean_intra_spread": float(spread),
        "mean_max_intra_distance": sum(max_intra) / len(max_intra) if max_intra else 0.0,
        "separation_ratio": mcd / float(spread) if float(spread) > 0 else float("inf"),
        "uniformity": uniformity,
        "alignment": alignment,
    }
