"""Seeded k-means in torch (on the features' device) and the elbow rule for K (paper eqs. 7-8).

- Initialisation: k-means++ (D^2 sampling), random numbers drawn from a CPU ``torch.Generator``
  seeded by ``seed``, so the result is the same on every device.
- Lloyd iterations until no assignment changes (or ``max_iter``); distance ties go to the lowest
  cluster index (argmin). An emptied cluster is re-seeded at the point farthest from its centre
  (lowest index on ties).
- Elbow: WCSS W(K) (eq. 8) for K = 1..k_max; the elbow is the K >= 2 whose point lies farthest
  below the chord from (1, log W(1)) to (k_max, log W(k_max)) after scaling both axes to [0, 1]
  (the "kneedle" maximum-distance rule, on log W). The log makes a drop by a given factor count
  the same at any height: on the linear scale, the large early drops between well-separated
  clusters pull the chord up, and the rule stops one cluster early (6 clear blobs -> K = 5).
  W is floored at 1e-6 W(1) (perfect clusters, duplicate points). K = 1 enters only the curve:
  IUN needs at least two centres, and with W(1) in the curve two clear clusters still give their
  elbow at K = 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KMeansResult:
    """labels (N,) int64, centers (K,D), wcss (float, eq. 8), iterations run."""

    labels: torch.Tensor
    centers: torch.Tensor
    wcss: float
    iterations: int


def _sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    # ||x||^2 + ||c||^2 - 2 x.c in float64: exact enough for assignment at these sizes.
    x64, c64 = x.double(), c.double()
    d = (x64 * x64).sum(1, keepdim=True) + (c64 * c64).sum(1)[None, :] - 2.0 * x64 @ c64.T
    return d.clamp_min_(0.0)


def kmeans(x: torch.Tensor, k: int, seed: int = 0, max_iter: int = 100) -> KMeansResult:
    """Cluster x (N,D) into k clusters. Deterministic for a given seed, on any device."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 1:
        raise ValueError("x must be a non-empty (N,D) tensor")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of rows of x); got {k}")
    x = x.detach()
    gen = torch.Generator().manual_seed(int(seed))
    first = int(torch.randint(n, (1,), generator=gen))
    chosen = [first]
    mind = _sq_dists(x, x[first:first + 1])[:, 0]
    for _ in range(1, k):
        total = float(mind.sum())
        if total <= 0.0:  # fewer distinct points than k: take the lowest unused index
            used = set(chosen)
            nxt = next(i for i in range(n) if i not in used)
        else:
            u = float(torch.rand((), generator=gen, dtype=torch.float64)) * total
            cdf = torch.cumsum(mind, 0)
            nxt = int(torch.searchsorted(cdf, torch.tensor([u], dtype=cdf.dtype, device=cdf.device)).clamp_max(n - 1))
        chosen.append(nxt)
        mind = torch.minimum(mind, _sq_dists(x, x[nxt:nxt + 1])[:, 0])
    centers = x[chosen].double().clone()
    labels = torch.full((n,), -1, dtype=torch.long, device=x.device)
    it = 0
    for it in range(1, max_iter + 1):
        d = _sq_dists(x, centers)
        new = d.argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
        centers = _means(x.double(), labels, k)
        counts = torch.bincount(labels, minlength=k)
        for j in (counts == 0).nonzero().flatten().tolist():
            far = int(d.gather(1, labels[:, None]).squeeze(1).argmax())
            centers[j] = x[far].double()
            labels[far] = j
    wcss = float(_sq_dists(x, centers).gather(1, labels[:, None]).sum())
    return KMeansResult(labels, centers.to(x.dtype), wcss, it)


def _means(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k).clamp_min(1).to(x.dtype)
    return sums / counts[:, None]


def elbow_k(wcss: list[float]) -> int:
    """The elbow K for a WCSS curve given for K = 1..len(wcss): the K >= 2 farthest below the
    normalised chord of log W (ties: lowest K)."""
    m = len(wcss)
    if m < 2:
        raise ValueError(f"wcss needs values for at least K = 1, 2; got {m}")
    if m == 2:
        return 2
    w = torch.tensor(wcss, dtype=torch.float64)
    w = torch.log(w.clamp_min(max(float(w[0]), 1e-300) * 1e-6))
    span = float(w[0] - w[-1])
    if span <= 0.0:
        return 2  # flat curve: no structure, the smallest K IUN can use
    ks = torch.arange(m, dtype=torch.float64) / (m - 1)
    wn = (w - w[-1]) / span                     # 1 at K=1, 0 at K=k_max
    below = (1.0 - ks) - wn                     # chord minus curve (chord runs from (0,1) to (1,0))
    below[0] = -float("inf")
    return int(torch.argmax(below)) + 1         # argmax: first maximum, i.e. lowest K


def kmeans_elbow(x: torch.Tensor, k_max: int = 10, seed: int = 0, max_iter: int = 100):
    """K-means with K chosen by the elbow rule over K = 1..k_max (result has K >= 2).

    Returns (KMeansResult for the chosen K, wcss list for K = 1..k_max)."""
    n = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() == 2 else 0
    if n < 2:
        raise ValueError("x must be an (N,D) tensor with N >= 2")
    if k_max < 2:
        raise ValueError(f"k_max must be >= 2; got {k_max}")
    k_max = min(k_max, n)
    results = [kmeans(x, k, seed=seed, max_iter=max_iter) for k in range(1, k_max + 1)]
    curve = [r.wcss for r in results]
    return results[elbow_k(curve) - 1], curve
