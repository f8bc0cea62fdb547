"""Registration of every cloud to its category's template, as Reg3D-AD does, plus ICP.

Steps (lengths from ``RegistrationConfig``, see ``resolve_lengths``):
1. voxel-downsample source and template (Open3D ``voxel_down_sample``, voxel 0.5 mm);
2. normals (radius 1.0, max_nn 30) and FPFH (radius 2.5, max_nn 100) with group3ad_ext;
3. Open3D RANSAC on FPFH correspondences: mutual filter, distance 0.75, ransac_n 3,
   edge-length checker 0.9, distance checker 0.75, 100000 iterations / 0.999 confidence;
4. point-to-plane ICP on the downsampled clouds from the RANSAC pose (Reg3D-AD has it but
   leaves it off; it tightens the coordinate branch). Our own ICP (``icp_point_to_plane``: the
   exact knn op + a float64 6x6 solve, Open3D's update rule): Open3D's ICP sums its normal
   equations in parallel, so its last bits depend on thread scheduling;
5. steps 3-4 again from the source's negated normals (``flip_normals``); while the best
   fitness stays below ``min_fitness``: a rotation search (ICP from ``rotation_search``
   starting rotations, no features), then RANSAC again with the next seeds and a raised
   confidence (``restarts``); the best result by fitness is kept (Reg3D-AD
   tries once; see ``TemplateRegistrar.register``);
6. the transform is applied to the full-resolution cloud.

Determinism: Open3D's RANSAC draws from its global generator, seeded with
``o3d.utility.random.seed(seed)`` right before each call, so one cloud registers the same way
whatever was registered before it; ICP and the reported fitness/RMSE are computed
single-order (``icp_point_to_plane``). Open3D runs the RANSAC loop on its TBB threads, which
take their draws from that generator in whatever order they reach it: with 2 threads the same
call gave different poses on some scans (duck test 9 of the small preset: two transforms in
three calls). So RANSAC runs on one Open3D thread (``_one_open3d_thread``), and the same seed
gives bit-identical transforms on every run, whatever the machine's thread count.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

import group3ad_ext

from . import kernels
from .config import RegistrationConfig


@dataclass
class Lengths:
    voxel: float
    normal_radius: float
    fpfh_radius: float
    ransac_distance: float
    icp_distance: float


def resolve_lengths(cfg: RegistrationConfig, template_points: np.ndarray) -> Lengths:
    """Absolute lengths for this template: as configured ("mm"), or rescaled so the voxel is
    ``spacing_scale`` point spacings with Reg3D-AD's ratios kept ("spacing")."""
    factor = 1.0
    if cfg.units == "spacing":
        factor = cfg.spacing_scale * kernels.point_spacing(template_points) / cfg.voxel_size
    return Lengths(cfg.voxel_size * factor, cfg.normal_radius * factor, cfg.fpfh_radius * factor,
                   cfg.ransac_distance * factor, cfg.icp_distance * factor)


def _o3d():
    import open3d as o3d

    return o3d


def _cloud(points: np.ndarray):
    o3d = _o3d()
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))


class _Prepared:
    """A downsampled cloud with our normals and FPFH, in Open3D containers."""

    def __init__(self, points: np.ndarray, lengths: Lengths, cfg: RegistrationConfig,
                 downsampled: bool = False, normals: np.ndarray | None = None):
        o3d = _o3d()
        down = (np.asarray(points, dtype=np.float64) if downsampled
                else np.asarray(_cloud(points).voxel_down_sample(lengths.voxel).points))
        self.points = down
        self.flipped_normals = False
        self.normals = (kernels.normals(down, lengths.normal_radius, cfg.normal_max_nn)
                        if normals is None else normals)
        feats = kernels.fpfh(down, self.normals, lengths.fpfh_radius, cfg.fpfh_max_nn)
        self.pcd = _cloud(down)
        self.pcd.normals = o3d.utility.Vector3dVector(self.normals)
        self.feature = o3d.pipelines.registration.Feature()
        self.feature.data = np.ascontiguousarray(feats.T, dtype=np.float64)

    def flipped(self, lengths: Lengths, cfg: RegistrationConfig) -> "_Prepared":
        """The same downsampled points with every normal negated (and their FPFH)."""
        flipped = _Prepared(self.points, lengths, cfg, downsampled=True, normals=-self.normals)
        flipped.flipped_normals = True
        return flipped


@dataclass
class RegistrationResult:
    transform: np.ndarray  # (4,4) float64, source -> template
    fitness: float  # fraction of downsampled source points with a template point within range
    rmse: float
    attempts: int = 1  # RANSAC seeds tried (restarts + 1 at most)
    flipped: bool = False  # the kept result came from the source's negated normals
    found_by: str = "ransac"  # "ransac" or "rotation_search": where the kept result came from


class TemplateRegistrar:
    """Registers clouds to one template; the template's features are computed once.

    >>> reg = TemplateRegistrar(template_xyz, cfg.registration, seed=0)
    >>> registered_xyz = reg.apply(cloud_xyz, reg.register(cloud_xyz).transform)
    """

    def __init__(self, template_points: np.ndarray, cfg: RegistrationConfig, seed: int = 0,
                 lengths: Lengths | None = None, downsampled: bool = False):
        if len(template_points) < 3:
            raise ValueError("template_points must hold at least 3 points")
        self.cfg = cfg
        self.seed = int(seed)
        self.lengths = lengths or resolve_lengths(cfg, template_points)
        self.template = _Prepared(template_points, self.lengths, cfg, downsampled=downsampled)

    def state_dict(self) -> dict:
        """What a model file keeps: the downsampled template and the resolved lengths."""
        import torch

        return {"points": torch.from_numpy(np.ascontiguousarray(self.template.points)),
                "lengths": dict(vars(self.lengths)), "seed": self.seed}

    @classmethod
    def from_state_dict(cls, d: dict, cfg: RegistrationConfig) -> "TemplateRegistrar":
        return cls(d["points"].numpy(), cfg, d["seed"], Lengths(**d["lengths"]), downsampled=True)

    def register(self, points: np.ndarray) -> RegistrationResult:
        """The rigid transform taking ``points`` (N,3) onto the template.

        The first attempt runs RANSAC (+ ICP) from the source's features and, with
        ``flip_normals``, again from the features of its negated normals; the best result by
        (fitness, then lower RMSE) is kept. While that fitness is below ``min_fitness``:
        1. the rotation search (``rotation_search`` > 0, see ``_rotation_search``): ICP from
           that many starting rotations, no features involved;
        2. up to ``restarts`` more RANSAC attempts with seeds ``seed + 1, seed + 2, ...`` and
           RANSAC's ``restart_confidence`` / ``restart_max_iteration`` (Open3D's confidence
           rule counts fitness, not correspondence inliers, so at 0.999 it stops after a few
           hundred iterations on a wrong pose).
        A cloud that never fits pays all of it: about 25 s on the small preset on a 2-core CPU.

        Why the flip: the normals are unoriented (the eigen solver's sign), and FPFH is not
        invariant to their sign, so on a randomly posed scan a cloud-dependent share of normals
        points the other way from the template's. Why the search: FPFH correspondences can be
        wrong wholesale (real3d gear 6_good: Open3D's mutual filter kept 1 correspondence),
        and then no RANSAC seed finds the pose, while ICP from enough starting rotations does
        (benchmarks/results/registration.md, registration_real3d.md).
        """
        if not self.cfg.enabled:
            return RegistrationResult(np.eye(4), 1.0, 0.0)
        cfg = self.cfg
        src = _Prepared(points, self.lengths, cfg)
        sources = [src, src.flipped(self.lengths, cfg)] if cfg.flip_normals else [src]
        best = None

        def keep(result: RegistrationResult) -> None:
            nonlocal best
            if best is None or (result.fitness, -result.rmse) > (best.fitness, -best.rmse):
                best = result

        for attempt in range(cfg.restarts + 1):
            for source in sources:
                keep(self._attempt(source, self.seed + attempt, restart=attempt > 0))
            if attempt == 0 and best.fitness < cfg.min_fitness and cfg.rotation_search > 0:
                keep(self._rotation_search(src))
            if best.fitness >= cfg.min_fitness:
                break
        best.attempts = attempt + 1
        return best

    def _rotation_search(self, src: "_Prepared") -> RegistrationResult:
        """ICP from ``rotation_search`` starting rotations (uniform, drawn from ``seed``), each
        with the source's centroid moved onto the template's; no features involved.

        Coarse: the ``search_points`` farthest-point samples of the downsampled source, all
        starts at once (one knn call per iteration), 10 ICP iterations at each correspondence
        distance of the schedule template diagonal / 8, / 16, / 32, then 2 x icp_distance.
        Fine: the 3 best starts by coarse fitness (ties: the lower start index) get the full
        ICP on the whole downsampled source; the best of them by (fitness, -rmse) is returned.
        """
        L, cfg, tgt = self.lengths, self.cfg, self.template
        if len(src.points) < 6 or len(tgt.points) < 6:
            return RegistrationResult(np.eye(4), 0.0, 0.0, found_by="rotation_search")
        n_sub = min(cfg.search_points, len(src.points))
        sub = src.points[group3ad_ext.fps(torch.from_numpy(src.points), n_sub).numpy()]
        rotations = _uniform_rotations(cfg.rotation_search, self.seed)
        c_src, c_tgt = src.points.mean(axis=0), tgt.points.mean(axis=0)
        starts = np.tile(np.eye(4), (len(rotations), 1, 1))
        starts[:, :3, :3] = rotations
        starts[:, :3, 3] = c_tgt - rotations @ c_src
        diagonal = float(np.linalg.norm(np.ptp(tgt.points, axis=0)))
        schedule = [max(diagonal / k, L.icp_distance) for k in (8, 16, 32)] + [2 * L.icp_distance]
        coarse = icp_point_to_plane_batch(sub, tgt.points, tgt.normals, schedule, starts, 10)
        _, dist, _ = _nearest_batch(coarse, sub, torch.from_numpy(np.ascontiguousarray(tgt.points)))
        coarse_fitness = (dist < L.ransac_distance).mean(axis=1)
        order = np.argsort(-coarse_fitness, kind="stable")[:3]
        best = None
        for h in order:
            transform = icp_point_to_plane(src.points, tgt.points, tgt.normals, L.icp_distance,
                                           coarse[h], cfg.icp_max_iteration)
            fitness, rmse = _fit_quality(src.points, tgt.points, transform, L.ransac_distance)
            if best is None or (fitness, -rmse) > (best.fitness, -best.rmse):
                best = RegistrationResult(transform, fitness, rmse, found_by="rotation_search")
        return best

    def _attempt(self, src: "_Prepared", seed: int, restart: bool = False) -> RegistrationResult:
        """One RANSAC run (seeded) from ``src``'s features, then ICP; scored on the
        downsampled clouds. A restart uses the restart confidence and iteration cap."""
        o3d = _o3d()
        reg = o3d.pipelines.registration
        L, cfg, tgt = self.lengths, self.cfg, self.template
        transform = np.eye(4)
        if len(src.points) >= cfg.ransac_n and len(tgt.points) >= cfg.ransac_n:
            criteria = ((cfg.restart_max_iteration, cfg.restart_confidence) if restart
                        else (cfg.max_iteration, cfg.confidence))
            # Open3D warns "Too few correspondences after mutual filter" on most scans and
            # then uses them all, as intended; failures show in the fitness checked below.
            quiet = o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error)
            with _one_open3d_thread(o3d), quiet:
                o3d.utility.random.seed(seed)
                result = reg.registration_ransac_based_on_feature_matching(
                    src.pcd, tgt.pcd, src.feature, tgt.feature, cfg.mutual_filter,
                    L.ransac_distance, reg.TransformationEstimationPointToPoint(False),
                    cfg.ransac_n,
                    [reg.CorrespondenceCheckerBasedOnEdgeLength(cfg.edge_length_ratio),
                     reg.CorrespondenceCheckerBasedOnDistance(L.ransac_distance)],
                    reg.RANSACConvergenceCriteria(*criteria))
            transform = np.asarray(result.transformation).copy()
        if cfg.icp:
            transform = icp_point_to_plane(src.points, tgt.points, tgt.normals, L.icp_distance,
                                           transform, cfg.icp_max_iteration)
        fitness, rmse = _fit_quality(src.points, tgt.points, transform, L.ransac_distance)
        return RegistrationResult(transform, fitness, rmse, flipped=src.flipped_normals)

    @staticmethod
    def apply(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
        """points (N,3) mapped by the 4x4 rigid transform."""
        points = np.asarray(points, dtype=np.float64)
        return points @ transform[:3, :3].T + transform[:3, 3]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """``points`` registered to the template (full resolution)."""
        return self.apply(points, self.register(points).transform)


@contextmanager
def _one_open3d_thread(o3d):
    """Open3D's parallel loops on one thread inside the block, restored after (see the module
    docstring for why RANSAC needs it)."""
    util = o3d.utility
    before = util.get_max_threads()
    util.set_max_threads(1)
    try:
        yield
    finally:
        util.set_max_threads(before)


def _nearest(query: np.ndarray, points_t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest template point of each query: (dist (M,), idx (M,)), float64."""
    d2, idx = group3ad_ext.knn(torch.from_numpy(np.ascontiguousarray(query)), points_t, 1)
    return np.sqrt(d2[:, 0].numpy()), idx[:, 0].numpy()


def _nearest_batch(transforms: np.ndarray, points: np.ndarray, points_t: torch.Tensor):
    """``points`` (S,3) moved by each of ``transforms`` (H,4,4), and the nearest template point
    of every moved point, in one knn call: (moved (H,S,3), dist (H,S), idx (H,S))."""
    moved = np.einsum("hij,sj->hsi", transforms[:, :3, :3], points) + transforms[:, None, :3, 3]
    dist, idx = _nearest(moved.reshape(-1, 3), points_t)
    return moved, dist.reshape(len(transforms), -1), idx.reshape(len(transforms), -1)


def _fit_quality(src: np.ndarray, tgt: np.ndarray, transform: np.ndarray, max_dist: float):
    """Open3D's evaluate_registration: fitness = share of source points with a template point
    within max_dist, rmse over those."""
    if len(src) == 0:
        return 0.0, 0.0
    dist, _ = _nearest(TemplateRegistrar.apply(src, transform), torch.from_numpy(np.ascontiguousarray(tgt)))
    inl = dist < max_dist
    if not inl.any():
        return 0.0, 0.0
    return float(inl.mean()), float(np.sqrt(np.mean(dist[inl] ** 2)))


def _rotation_xyz(a: float, b: float, c: float) -> np.ndarray:
    """R = Rz(c) Ry(b) Rx(a), Open3D's TransformVector6dToMatrix4d."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    return np.array([[cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa],
                     [sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa],
                     [-sb, cb * sa, cb * ca]])


def _point_to_plane_step(p: np.ndarray, q: np.ndarray, n: np.ndarray) -> np.ndarray | None:
    """The (4,4) update of one point-to-plane ICP iteration (Open3D's linearisation) from the
    paired source points p (S,3), template points q (S,3) and template normals n (S,3);
    None when the normal equations are singular or their solution is not finite."""
    a = np.concatenate([np.cross(p, n), n], axis=1)  # (S,6)
    r = np.einsum("ij,ij->i", q - p, n)
    ata = np.einsum("ni,nj->ij", a, a)
    atb = np.einsum("ni,n->i", a, r)
    try:
        x = np.linalg.solve(ata, atb)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(x).all():
        return None
    step = np.eye(4)
    step[:3, :3] = _rotation_xyz(*x[:3])
    step[:3, 3] = x[3:]
    return step


def icp_point_to_plane(src: np.ndarray, tgt: np.ndarray, tgt_normals: np.ndarray, max_dist: float,
                       init: np.ndarray, max_iteration: int = 30,
                       relative_fitness: float = 1e-6, relative_rmse: float = 1e-6) -> np.ndarray:
    """Point-to-plane ICP (Open3D's algorithm and stopping rule), deterministic.

    src (S,3), tgt (T,3), tgt_normals (T,3) float64; init (4,4). Each iteration pairs every
    transformed source point with its nearest template point (exact knn op) when closer than
    max_dist, solves the linearised least squares for (rx, ry, rz, tx, ty, tz) in float64 and
    composes the update. Stops after max_iteration, or when fitness and RMSE change by less
    than the relative thresholds. Returns the (4,4) transform.
    """
    transform = np.asarray(init, dtype=np.float64).copy()
    if len(src) == 0 or len(tgt) == 0:
        return transform
    tgt_t = torch.from_numpy(np.ascontiguousarray(tgt, dtype=np.float64))
    tgt_normals = np.asarray(tgt_normals, dtype=np.float64)
    prev_fitness, prev_rmse = 0.0, 0.0
    for it in range(max_iteration + 1):
        moved = TemplateRegistrar.apply(src, transform)
        dist, idx = _nearest(moved, tgt_t)
        inl = dist < max_dist
        fitness = float(inl.mean())
        rmse = float(np.sqrt(np.mean(dist[inl] ** 2))) if inl.any() else 0.0
        if it > 0 and (abs(prev_fitness - fitness) < relative_fitness
                       and abs(prev_rmse - rmse) < relative_rmse):
            break
        if it == max_iteration or inl.sum() < 6:
            break
        prev_fitness, prev_rmse = fitness, rmse
        step = _point_to_plane_step(moved[inl], tgt[idx[inl]], tgt_normals[idx[inl]])
        if step is None:
            break
        transform = step @ transform
    return transform


def icp_point_to_plane_batch(src: np.ndarray, tgt: np.ndarray, tgt_normals: np.ndarray,
                             schedule: list[float], inits: np.ndarray, iterations: int) -> np.ndarray:
    """Point-to-plane ICP from many starting poses at once, for the rotation search.

    src (S,3), tgt (T,3), tgt_normals (T,3) float64; inits (H,4,4). For each correspondence
    distance of ``schedule`` in turn, ``iterations`` ICP iterations on every start; all H
    transformed copies of ``src`` query the template in one knn call per iteration. No early
    stop: a start skips an iteration when fewer than 6 pairs are in range or its system is
    singular. Returns (H,4,4).
    """
    transforms = np.asarray(inits, dtype=np.float64).copy()
    tgt = np.asarray(tgt, dtype=np.float64)
    tgt_t = torch.from_numpy(np.ascontiguousarray(tgt))
    tgt_normals = np.asarray(tgt_normals, dtype=np.float64)
    for max_dist in schedule:
        for _ in range(iterations):
            moved, dist, idx = _nearest_batch(transforms, src, tgt_t)
            for h in range(len(transforms)):
                inl = dist[h] < max_dist
                if inl.sum() < 6:
                    continue
                step = _point_to_plane_step(moved[h][inl], tgt[idx[h][inl]], tgt_normals[idx[h][inl]])
                if step is not None:
                    transforms[h] = step @ transforms[h]
    return transforms


def _uniform_rotations(n: int, seed: int) -> np.ndarray:
    """n rotations (n,3,3) uniform on SO(3): normalised Gaussian quaternions from ``seed``."""
    q = np.random.default_rng(seed).normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                     np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                     np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)],
                    axis=1)
