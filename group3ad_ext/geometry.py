"""Surface normals, FPFH descriptors, FPFH variation and Adaptive Group-Center Selection (AGCS).

``normals`` and ``fpfh`` reproduce Open3D's legacy ``estimate_normals`` (fast normal
computation) and ``pipelines.registration.compute_fpfh_feature`` with the hybrid search
(points strictly within ``radius``, at most ``max_nn`` nearest, the point itself included);
both compute in double precision internally whatever the input dtype, on CPU and CUDA.
``fpfh_variation`` is Group3AD's eq. 15 and ``agcs`` its Algorithm 2.
"""

from __future__ import annotations

import math
import numbers

import torch

from . import _loader  # noqa: F401  (registers torch.ops.group3ad_ext.*)
from ._checks import (
    check_device,
    check_finite,
    check_float,
    check_int,
    check_points,
    check_positive_float,
    check_same_device,
    check_tensor,
)

__all__ = ["normals", "fpfh", "fpfh_variation", "fpfh_with_variation", "agcs", "point_spacing",
           "NORMAL_RADIUS_SPACINGS", "FPFH_RADIUS_SPACINGS", "FPFH_BINS"]

FPFH_BINS = 33
# agcs radii in units of the measured point spacing: Reg3D-AD estimates normals with radius 1.0
# and FPFH with radius 2.5 on clouds voxelised at 0.5, i.e. 2x and 5x the point spacing.
NORMAL_RADIUS_SPACINGS = 2.0
FPFH_RADIUS_SPACINGS = 5.0

_ops = torch.ops.group3ad_ext


# ----------------------------------------------------------------------------------------------
# Fake kernels (shapes only) so the ops trace under torch.compile.
@torch.library.register_fake("group3ad_ext::normals")
def _normals_fake(points, radius, max_nn):
    return points.new_empty(points.shape)


@torch.library.register_fake("group3ad_ext::fpfh")
def _fpfh_fake(points, normals, indices, radius, max_nn):
    rows = points.shape[0] if indices is None else indices.shape[0]
    return points.new_empty((rows, FPFH_BINS))


@torch.library.register_fake("group3ad_ext::fpfh_variation")
def _fpfh_variation_fake(points, features, k):
    return features.new_empty((points.shape[0],))


@torch.library.register_fake("group3ad_ext::fpfh_with_variation")
def _fpfh_with_variation_fake(points, normals, radius, max_nn, k):
    return points.new_empty((points.shape[0], FPFH_BINS)), points.new_empty((points.shape[0],))


# ----------------------------------------------------------------------------------------------
def _check_cloud(points, name="points") -> torch.Tensor:
    check_points(points, name, dims=(2,))
    return points.contiguous()


def _check_radius(radius, name: str, allow_none: bool):
    if radius is None and allow_none:
        return None
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real):
        raise ValueError(f"{name} must be a finite number > 0"
                         + (" or None" if allow_none else "") + f", got {type(radius).__name__}")
    return check_positive_float(radius, name)


def _check_vector3(v, name: str, device, dtype) -> torch.Tensor:
    try:
        t = torch.as_tensor(v, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be 3 numbers (a sequence or a tensor of shape (3,))") from None
    if t.shape != (3,):
        raise ValueError(f"{name} must have shape (3,); got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return t.to(device=device, dtype=dtype)


def _orient(points: torch.Tensor, n: torch.Tensor, orient_to) -> torch.Tensor:
    """Flip normals toward a viewpoint (tensor/sequence of 3) or along ("direction", (3,))."""
    if orient_to is None:
        return n
    if isinstance(orient_to, tuple) and len(orient_to) == 2 and isinstance(orient_to[0], str):
        kind, vec = orient_to
        if kind != "direction":
            raise ValueError(f"orient_to must be None, a viewpoint (3,) or ('direction', (3,)); "
                             f"got the tag {kind!r}")
        d = _check_vector3(vec, "orient_to direction", n.device, n.dtype)
        if not bool((d != 0).any()):
            raise ValueError("orient_to direction must be a non-zero vector")
        ref = d.expand_as(n)
    elif isinstance(orient_to, str):
        raise ValueError(f"orient_to must be None, a viewpoint (3,) or ('direction', (3,)); got {orient_to!r}")
    else:
        ref = _check_vector3(orient_to, "orient_to", n.device, n.dtype) - points
    flip = (n * ref).sum(dim=1) < 0
    return torch.where(flip[:, None], -n, n)


# ----------------------------------------------------------------------------------------------
def normals(points: torch.Tensor, radius: float | None = None, max_nn: int = 30,
            orient_to=None) -> torch.Tensor:
    """Unit surface normals by PCA of each point's neighbourhood, as Open3D's estimate_normals.

    Args:
        points: (N,3) float32/float64, CPU or CUDA, finite.
        radius: hybrid search radius (neighbours with distance < radius, at most ``max_nn``
            nearest, like ``KDTreeSearchParamHybrid``); None: the ``max_nn`` nearest points
            (``KDTreeSearchParamKNN``). The point itself counts as a neighbour.
        max_nn: >= 3, the neighbourhood cap.
        orient_to: None (unoriented: the sign is that of the eigen solver), a viewpoint
            (tensor or sequence of 3: normals are flipped to face it, n.(v - p) >= 0), or
            ``("direction", (dx,dy,dz))`` (flipped so that n.d >= 0).

    Returns:
        (N,3) tensor, points' dtype and device: the eigenvector of the smallest eigenvalue of
        the neighbourhood covariance (computed in double). Degenerate neighbourhoods never give
        NaN: fewer than 3 points or all identical -> (0,0,1); collinear along an axis ->
        (0,0,1) (or the axis of the strictly smallest variance); collinear otherwise -> a
        deterministic unit vector orthogonal to the line.
    """
    points = _check_cloud(points)
    radius = _check_radius(radius, "radius", allow_none=True)
    max_nn = check_int(max_nn, "max_nn", low=3)
    if orient_to is not None and points.device.type != "meta":
        _orient(points[:0], points[:0], orient_to)  # validate before the kernel runs
    n = _ops.normals(points, -1.0 if radius is None else radius, max_nn)
    return _orient(points, n, orient_to)


def fpfh(points: torch.Tensor, normals: torch.Tensor, radius: float, max_nn: int = 100,
         indices: torch.Tensor | None = None) -> torch.Tensor:
    """Fast Point Feature Histograms, the numbers of Open3D's ``compute_fpfh_feature``.

    Hybrid neighbourhood (distance < radius, at most ``max_nn`` nearest, the point itself
    included); SPFH: 11 bins each for theta, alpha, phi, 100/(n-1) per pair; FPFH: neighbour
    SPFHs weighted by 1/squared distance (coincident neighbours skipped), each 11-bin block
    normalised to 100, plus the point's own SPFH, so each block sums to 200 (0 for a point
    without neighbours). Computed in double. Given the same normals it equals Open3D's tensor
    API ``t.pipelines.registration.compute_fpfh_feature`` to 1e-9 on every row, and the legacy
    ``pipelines.registration.compute_fpfh_feature`` on most rows: where two neighbours' normals
    make the same angle with the line joining them up to the last bit (nearly coplanar
    normals), the pair's frame is decided by rounding, which the legacy build does
    differently, and a row can differ by that pair's share. Neighbours at exactly equal
    distances are ordered by index.

    Args:
        points: (N,3) float32/float64, finite.
        normals: (N,3) float, finite (e.g. from ``normals``; the sign matters).
        radius: > 0.
        max_nn: >= 1.
        indices: optional (Q,) integer tensor of rows in [0, N): the feature of those points
            only (their neighbours' SPFHs are still computed).

    Returns:
        (N,33) or (Q,33) tensor, points' dtype and device; columns [theta | alpha | phi].
    """
    points = _check_cloud(points)
    normals = _check_normals(points, normals)
    radius = _check_radius(radius, "radius", allow_none=False)
    max_nn = check_int(max_nn, "max_nn", low=1)
    if indices is not None:
        check_tensor(indices, "indices")
        check_same_device(("points", points), ("indices", indices))
        if indices.dim() != 1:
            raise ValueError(f"indices must have shape (Q,); got {tuple(indices.shape)}")
        if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
            raise ValueError(f"indices must be an integer tensor; got {indices.dtype}")
        if indices.numel() and indices.device.type != "meta":
            lo, hi = int(indices.min()), int(indices.max())
            if lo < 0 or hi >= points.shape[0]:
                raise ValueError(f"indices must lie in [0, {points.shape[0] - 1}]; got min {lo}, max {hi}")
        indices = indices.to(torch.int64).contiguous()
    return _ops.fpfh(points, normals, indices, radius, max_nn)


def _check_normals(points: torch.Tensor, normals) -> torch.Tensor:
    check_tensor(normals, "normals")
    check_device(normals, "normals")
    check_same_device(("points", points), ("normals", normals))
    if normals.shape != points.shape:
        raise ValueError(f"normals must have shape {tuple(points.shape)} (like points); "
                         f"got {tuple(normals.shape)}")
    check_float(normals, "normals")
    check_finite(normals, "normals")
    return normals.contiguous()


def fpfh_variation(points: torch.Tensor, features: torch.Tensor, k: int = 16) -> torch.Tensor:
    """Group3AD's local feature variation (eq. 15): F_p = sum_i ||f(p) - f(n_i)||_2.

    n_i are the k nearest *other* points of p (by index: coincident copies of p count as
    neighbours); with fewer than k other points, all of them. Default k=16: about the first two
    rings of neighbours on a scanned surface, wide enough to see a bump's rim from inside it
    and narrow enough to stay local (the paper does not state its n).

    Args:
        points: (N,3) float32/float64, finite.
        features: (N,F) float32/float64, finite (e.g. (N,33) from ``fpfh``).
        k: >= 1.

    Returns:
        (N,) tensor, features' dtype, points' device (sums in double). 0 for N = 1.
    """
    points = _check_cloud(points)
    check_tensor(features, "features")
    check_device(features, "features")
    check_same_device(("points", points), ("features", features))
    if features.dim() != 2 or features.shape[0] != points.shape[0]:
        raise ValueError(f"features must have shape ({points.shape[0]}, F); got {tuple(features.shape)}")
    check_float(features, "features")
    check_finite(features, "features")
    k = check_int(k, "k", low=1)
    return _ops.fpfh_variation(points, features.contiguous(), k)


def fpfh_with_variation(points: torch.Tensor, normals: torch.Tensor, radius: float,
                        max_nn: int = 100, k: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``fpfh`` of every point and its ``fpfh_variation`` over one spatial index: what ``agcs`` needs.

    The same values as ``f = fpfh(points, normals, radius, max_nn)`` then
    ``fpfh_variation(points, f, k)`` (bit for bit, on each backend); on the CPU one spatial
    index and one reordered copy of the cloud serve both (about 0.15 s less at 1M points).

    Args:
        points: (N,3) float32/float64, finite.
        normals: (N,3) float, finite (the sign matters).
        radius: > 0. max_nn: >= 1. k: >= 1.

    Returns:
        (features (N,33), variation (N,)), both in points' dtype, on points' device.
    """
    points = _check_cloud(points)
    normals = _check_normals(points, normals)
    radius = _check_radius(radius, "radius", allow_none=False)
    max_nn = check_int(max_nn, "max_nn", low=1)
    k = check_int(k, "k", low=1)
    return _ops.fpfh_with_variation(points, normals, radius, max_nn, k)


def point_spacing(points: torch.Tensor, sample: int = 10000) -> float:
    """Typical point spacing of a surface scan: the side of the patch each point covers.

    For each of ``sample`` points evenly strided through the cloud (deterministic), d8 is the
    distance to its 8th nearest other point; a surface disc of radius d8 holds about 8 points,
    so each covers pi*d8^2/8 and the spacing is sqrt(pi/8)*d8. Returns the median. This reads
    the same for random and for grid-like (voxelised) sampling: a voxel grid of step s gives
    about 0.89 s, a random sample of density rho gives about 1/sqrt(rho) (the nearest-neighbour
    distance alone would give half that for random sampling).

    Args:
        points: (N,3) float32/float64, finite.
        sample: >= 1, how many points to measure.

    Returns:
        float, in the cloud's unit; 0.0 when the measured neighbourhoods are all coincident.
    """
    points = _check_cloud(points)
    sample = check_int(sample, "sample", low=1)
    n = points.shape[0]
    if n < 2:
        return 0.0
    step = max(1, n // sample)
    q = points[::step][:sample].contiguous()
    k = min(9, n)  # the point itself (or a copy) and 8 others
    dev = points.device
    d2, _ = _ops.knn(q[None], points[None], torch.tensor([q.shape[0]], device=dev),
                     torch.tensor([n], device=dev), k)
    d = d2[0, :, -1].double().sqrt() * math.sqrt(math.pi / (k - 1))
    return float(d.median())


def _fps(points: torch.Tensor, seeds: torch.Tensor, n_samples: int) -> torch.Tensor:
    lengths = torch.tensor([points.shape[0]], dtype=torch.int64, device=points.device)
    return _ops.fps(points[None].contiguous(), lengths, seeds[None].contiguous(), n_samples)[0]


def agcs(points: torch.Tensor, n_centers: int, alpha: float = 0.2, q: float = 0.1,
         normal_radius: float | None = None, fpfh_radius: float | None = None,
         k: int = 16, normal_max_nn: int = 30, fpfh_max_nn: int = 100,
         orient_to="centroid", return_variation: bool = False, start_idx: int = 0):
    """Adaptive Group-Center Selection (Group3AD Algorithm 2): FPS with extra centres where the
    local geometry varies.

    1. normals (hybrid radius ``normal_radius``, ``normal_max_nn``) oriented by ``orient_to``,
       FPFH (``fpfh_radius``,
       ``fpfh_max_nn``) and their variation over the ``k`` nearest points (``fpfh_variation``);
    2. the high-variation set: the top ``q`` fraction of points by variation (ceil(q*N), but
       only points with variation > 0, and at least round(alpha*n_centers); ties to the lower
       index);
    3. m = round(alpha*n_centers) centres by FPS inside that set, starting at its highest-
       variation point;
    4. the remaining n_centers - m by FPS over the whole cloud, continuing from those m
       centres (they seed the distances), so centres stay spread and never repeat.

    ``alpha=0`` skips steps 1-3 and returns exactly ``fps(points, n_centers, start_idx)``;
    ``start_idx`` is only used then (m = 0). Radii default to multiples of
    ``point_spacing(points)``: ``NORMAL_RADIUS_SPACINGS`` (2) and ``FPFH_RADIUS_SPACINGS`` (5),
    Reg3D-AD's settings, so the call works in any unit.

    Args:
        points: (N,3) float32/float64, CPU or CUDA, finite, with at least n_centers distinct
            points (else FPS may repeat a coincident point).
        n_centers: 1 <= n_centers <= N.
        alpha: share of centres placed by variation, in [0, 1]; the paper's best is 0.2.
        q: fraction of points forming the high-variation set, in (0, 1].
        normal_radius, fpfh_radius: > 0 or None (spacing multiples).
        k: neighbours of the variation, >= 1.
        normal_max_nn: >= 3. fpfh_max_nn: >= 1.
        orient_to: "centroid" (default: normals point away from the cloud's centroid, right for
            closed part scans), None (the solver's arbitrary signs: on flat regions opposite
            signs make FPFH, hence the variation, noisy), or a viewpoint / ("direction", v) as
            in ``normals`` (e.g. ("direction", (0, 0, 1)) for a height map).
        return_variation: also return the (N,) variation (computed even when alpha = 0).
        start_idx: first FPS index when alpha*n_centers rounds to 0, in [0, N).

    Returns:
        (n_centers,) int64 indices on points' device, the variation-driven ones first; with
        ``return_variation`` a tuple (indices, (N,) variation in points' dtype).
    """
    points = _check_cloud(points)
    n = points.shape[0]
    n_centers = check_int(n_centers, "n_centers", low=1, high=n)
    alpha = _check_unit_interval(alpha, "alpha", allow_zero=True)
    q = _check_unit_interval(q, "q", allow_zero=False)
    normal_radius = _check_radius(normal_radius, "normal_radius", allow_none=True)
    fpfh_radius = _check_radius(fpfh_radius, "fpfh_radius", allow_none=True)
    k = check_int(k, "k", low=1)
    normal_max_nn = check_int(normal_max_nn, "normal_max_nn", low=3)
    fpfh_max_nn = check_int(fpfh_max_nn, "fpfh_max_nn", low=1)
    start_idx = check_int(start_idx, "start_idx", low=0, high=n - 1)
    if isinstance(orient_to, str) and orient_to == "centroid":
        pass
    elif orient_to is not None:
        _orient(points[:0], points[:0], orient_to)  # validate before any kernel runs
    if not isinstance(return_variation, bool):
        raise ValueError(f"return_variation must be a bool, got {type(return_variation).__name__}")

    m = int(round(alpha * n_centers))
    variation = None
    if m > 0 or return_variation:
        variation = _variation(points, normal_radius, fpfh_radius, k, normal_max_nn, fpfh_max_nn,
                               orient_to)
    dev = points.device
    if m == 0:
        centres = _fps(points, torch.tensor([start_idx], dtype=torch.int64, device=dev), n_centers)
    else:
        # Points without any variation (flat, uniform regions) are not "high variation" even
        # when fewer than q*N points vary; they fill the set only to reach m.
        n_varying = int((variation > 0).sum())
        n_high = min(n, max(m, min(math.ceil(q * n), n_varying)))
        order = torch.sort(variation, descending=True, stable=True).indices
        high = order[:n_high]
        # FPS inside the set, on its points in index order, from the highest-variation point.
        high_sorted, _ = torch.sort(high)
        first = torch.searchsorted(high_sorted, high[:1])
        seeds = high_sorted[_fps(points[high_sorted], first, m)]
        centres = _fps(points, seeds, n_centers) if m < n_centers else seeds
    if return_variation:
        return centres, variation
    return centres


def _check_unit_interval(v, name: str, allow_zero: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ValueError(f"{name} must be a number in {'[0, 1]' if allow_zero else '(0, 1]'}; got {v!r}")
    v = float(v)
    if v > 1 or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be in {'[0, 1]' if allow_zero else '(0, 1]'}; got {v}")
    return v


def _variation(points, normal_radius, fpfh_radius, k, normal_max_nn, fpfh_max_nn, orient_to):
    if normal_radius is None or fpfh_radius is None:
        spacing = point_spacing(points)
        if spacing == 0.0:
            # Every sampled neighbour coincides: fall back to the bounding box scale.
            extent = float((points.max(dim=0).values - points.min(dim=0).values).norm())
            spacing = extent / 100.0 if extent > 0 else 1.0
        normal_radius = normal_radius or NORMAL_RADIUS_SPACINGS * spacing
        fpfh_radius = fpfh_radius or FPFH_RADIUS_SPACINGS * spacing
    n = _ops.normals(points, normal_radius, normal_max_nn)
    if isinstance(orient_to, str) and orient_to == "centroid":
        # toward the centroid, then flipped: away from it
        n = -_orient(points, n, points.double().mean(dim=0).to(points.dtype))
    else:
        n = _orient(points, n, orient_to)
    return _ops.fpfh_with_variation(points, n.contiguous(), fpfh_radius, fpfh_max_nn, k)[1]
