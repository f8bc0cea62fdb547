"""Fake anomalies for IUN training (paper eqs. 1-6).

Choices the paper leaves open, stated:
- FPFH -> scalar (eq. 2, "the point with the highest FPFH feature"): the Shannon entropy of the
  33-bin histogram taken as one distribution. Open3D-style FPFH normalises each of its three
  11-bin sub-histograms to a constant sum, so the sum (and the L1 norm) is the same at every point, and
  the L2 norm is largest where the histogram is most peaked, i.e. on flat surface. The entropy is
  largest where the angles between normals spread over many bins: curved, creased or rough
  surface, the places where a defect is hardest to tell from shape. Ties: lowest index.
- Region (eq. 3): the round(r * N) points nearest to c (the ball whose radius d holds r of the
  points), r ~ U[0.01, 0.10]; distance ties to the lower index.
- Noise (eq. 4): sigma^2 ~ U[0.01, 0.05] is read in millimetres^2, the unit of Real3D-AD (objects
  20-38 mm across, unscaled); ``noise_unit`` is the length of 1 mm in the cloud's coordinates
  (1.0 for Real3D-AD, 0.001 for a cloud in metres, 1/diameter for a cloud normalised to unit
  size, ...). Each coordinate gets its own N(0, sigma^2 * noise_unit^2) draw.
- Union (eq. 6): FakeAnomaly(P) = P U A is taken literally by default: the perturbed copies A are
  appended and the clean points stay (``combine="union"``); ``combine="replace"`` moves the region's
  points instead. The mask marks A (the appended points, or the moved ones).
- FPFH radius: ``fpfh_radius`` or, when None, 10 x the median nearest-neighbour spacing
  (group3ad_ext.point_spacing; with max_nn = 100 mostly the 100 nearest points); normals by PCA of
  the 30 nearest points (group3ad_ext.normals, unoriented, as Reg3D-AD's Open3D call).
- Everything random comes from a CPU generator seeded by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import group3ad_ext


@dataclass
class FakeAnomaly:
    """points (N',3) modified cloud; mask (N',) bool, True on anomalous points; center_index
    (index of c in the input cloud); ratio r; variance sigma^2 (paper units)."""

    points: torch.Tensor
    mask: torch.Tensor
    center_index: int
    ratio: float
    variance: float


def fpfh_histograms(points: torch.Tensor, radius: float | None = None, max_nn: int = 100) -> torch.Tensor:
    """(N,33) FPFH of every point (group3ad_ext.normals from the 30 nearest points, unoriented,
    then group3ad_ext.fpfh with the hybrid radius / max_nn neighbourhood)."""
    p = points.detach().cpu()
    if radius is None:
        radius = 10.0 * group3ad_ext.point_spacing(p)
    if not radius > 0:
        raise ValueError(f"fpfh_radius must be > 0 (all points coincide?); got {radius}")
    return group3ad_ext.fpfh(p, group3ad_ext.normals(p, radius=None, max_nn=30), radius, max_nn=max_nn)


def fpfh_entropy(hist: torch.Tensor) -> torch.Tensor:
    """(N,33) histograms -> (N,) Shannon entropy (nats) of each normalised histogram; 0 where empty."""
    h = hist.double().clamp_min(0)
    total = h.sum(1, keepdim=True)
    p = torch.where(total > 0, h / total.clamp_min(1e-300), torch.zeros_like(h))
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)


def anomaly_center(points: torch.Tensor, fpfh_radius: float | None = None) -> int:
    """Eqs. 1-2: index of the point with the highest FPFH entropy (lowest index on ties)."""
    return int(torch.argmax(fpfh_entropy(fpfh_histograms(points, fpfh_radius))))


def make_fake_anomaly(points: torch.Tensor, seed: int = 0, ratio_range=(0.01, 0.10),
                      variance_range=(0.01, 0.05), noise_unit: float = 1.0, combine: str = "union",
                      center_index: int | None = None, fpfh_radius: float | None = None) -> FakeAnomaly:
    """Eqs. 1-6 on points (N,3). ``center_index`` skips the FPFH step (it depends only on the
    clean cloud, so training computes it once per cloud). Output on the input's device/dtype."""
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] != 3 or points.shape[0] < 2:
        raise ValueError("points must be an (N,3) tensor with N >= 2")
    for name, (lo, hi), top in (("ratio_range", ratio_range, 1.0), ("variance_range", variance_range, float("inf"))):
        if not 0 < lo <= hi <= top:
            raise ValueError(f"{name} must satisfy 0 < low <= high{' <= 1' if top == 1.0 else ''}; got {(lo, hi)}")
    if not noise_unit > 0:
        raise ValueError(f"noise_unit must be > 0; got {noise_unit}")
    if combine not in ("union", "replace"):
        raise ValueError(f"combine must be 'union' or 'replace'; got {combine!r}")
    n = points.shape[0]
    c = anomaly_center(points, fpfh_radius) if center_index is None else int(center_index)
    if not 0 <= c < n:
        raise ValueError(f"center_index must be in [0, {n}); got {c}")
    gen = torch.Generator().manual_seed(int(seed))
    ratio = lo_hi(ratio_range, gen)
    variance = lo_hi(variance_range, gen)
    m = min(n, max(1, round(ratio * n)))
    p64 = points.detach().cpu().double()
    d2 = ((p64 - p64[c]) ** 2).sum(1)
    local = torch.sort(d2, stable=True).indices[:m]             # stable: lower index first on ties
    noise = torch.randn(m, 3, generator=gen, dtype=torch.float64) * (variance ** 0.5 * noise_unit)
    anomaly = (p64[local] + noise).to(points.dtype).to(points.device)
    if combine == "union":
        out = torch.cat([points.detach(), anomaly], 0)
        mask = torch.zeros(n + m, dtype=torch.bool, device=points.device)
        mask[n:] = True
    else:
        out = points.detach().clone()
        local = local.to(points.device)
        out[local] = anomaly
        mask = torch.zeros(n, dtype=torch.bool, device=points.device)
        mask[local] = True
    return FakeAnomaly(out, mask, c, ratio, variance)


def lo_hi(rng, gen: torch.Generator) -> float:
    lo, hi = rng
    return float(lo + (hi - lo) * torch.rand((), generator=gen, dtype=torch.float64))
