"""Group3AD end to end: ``Group3AD(config).fit(train_clouds)``, ``.score(cloud)``, save/load.

fit (one category):
  1. centre every cloud (subtract its mean, as the Real3D-AD loader does); the template is the
     first training cloud (callers pass them in sorted order);
  2. register every training cloud to the template (registration.py);
  3. the encoder: pretrained (checkpoint or self-supervised), then IUN/IAN (encoding.py);
  4. feature bank: encoder features of ``n_groups_bank`` (default ``n_groups_test``) FPS groups
     of ``group_size`` points per registered training cloud, reduced to ``memory_size`` by the
     coreset op;
  5. coordinate bank: every registered training point, reduced to ``coord_memory_size``;
  6. per-branch statistics of normal data for single-cloud fusion (fusion.py).

score (one cloud): centre, register, AGCS centres (``alpha``; plain FPS without ``use_agcs``),
group features, distance to the nearest feature-bank entry per group, copied to each point
from its nearest centre (or inverse-distance weighted over ``idw_k`` centres); coordinate
branch: each registered point's distance to the nearest coordinate-bank entry; object score =
max point score per branch; the branches fused with the training statistics.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from . import __version__, kernels
from .config import Group3ADConfig, resolve_device
from .errors import UserError
from .fusion import BranchStats, fuse_train
from .memory_bank import MemoryBank
from .object_score import object_score, supported_points
from .progress import progress
from .registration import RegistrationResult, TemplateRegistrar

MODEL_FORMAT = "group3ad-model"
MODEL_FORMAT_VERSION = 1
STATS_SAMPLE = 20000  # training entries whose leave-one-out distances set the fusion statistics


def points_of(cloud) -> np.ndarray:
    """(N,3) float64 points of a numpy array, a tensor or an object with ``.points``."""
    pts = getattr(cloud, "points", cloud)
    if isinstance(pts, torch.Tensor):
        pts = pts.detach().cpu().numpy()
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise UserError(f"a point cloud must be an (N,3) array, got shape {pts.shape}")
    if len(pts) == 0:
        raise UserError("a point cloud is empty")
    if not np.isfinite(pts).all():
        raise UserError("a point cloud holds NaN or infinite coordinates (load it with drop_nan=True)")
    return pts


def centred(points: np.ndarray) -> np.ndarray:
    return points - points.mean(axis=0)


def leave_one_out(dist: np.ndarray, in_bank: np.ndarray) -> np.ndarray:
    """dist (n,2): each training entry's two nearest bank distances; in_bank (n,) bool: the
    entry is itself a bank row, so its first match is itself and the second one counts."""
    if dist.shape[1] == 1:
        return dist[:, 0]
    return np.where(in_bank, dist[:, 1], dist[:, 0])


def _stats_rows(n: int, seed: int) -> np.ndarray:
    if n <= STATS_SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, STATS_SAMPLE, replace=False))


class Group3AD:
    """The Group3AD anomaly detector for one object category.

    >>> model = Group3AD(Group3ADConfig()).fit(train_clouds)      # (N,3) arrays or Clouds
    >>> point_scores, object_score = model.score(test_cloud)      # (N,) numpy, float
    >>> model.save("airplane.g3ad"); model = Group3AD.load("airplane.g3ad")
    """

    def __init__(self, config: Group3ADConfig | None = None):
        self.config = (config or Group3ADConfig()).validate()
        self.device = resolve_device(self.config.device)
        self.encoder = None
        self.feature_bank = None
        self.coord_bank = None  # (M,3) float32 tensor
        self.registrar = None
        self.stats: dict = {}

    # -- fit ------------------------------------------------------------------------------------

    def fit(self, clouds, workspace=None, show_progress: bool = True, encoder=None) -> "Group3AD":
        """Fit on one category's normal training clouds (the first is the template).

        ``workspace`` (evaluate.Workspace) shares registrations and encoders between the
        methods of one evaluation; leave it None otherwise. ``encoder``: a ready encoder
        module (``forward(neighborhood (1,G,k,3), center (1,G,3)) -> (1,G,D)``) used as is,
        instead of preparing one from the config."""
        cfg = self.config
        clouds = [centred(points_of(c)) for c in clouds]
        if not clouds:
            raise UserError("the training set is empty: Group3AD needs at least one normal cloud")
        torch.manual_seed(cfg.seed)
        self.registrar = None
        if cfg.registration.enabled:
            self.registrar = (workspace.registrar(clouds[0], cfg) if workspace
                              else TemplateRegistrar(clouds[0], cfg.registration, cfg.seed))
        registered = []
        for i, pts in enumerate(progress(clouds, "register train", show_progress)):
            if i == 0 or not cfg.registration.enabled:
                registered.append(pts)
            elif workspace:
                registered.append(workspace.registered(("train", i), pts, self.registrar))
            else:
                registered.append(self.registrar(pts))
        tensors = [kernels.as_tensor(p, self.device) for p in registered]
        if encoder is not None:
            self.encoder = encoder.to(self.device).eval()
        elif workspace is not None:
            self.encoder = workspace.encoder(cfg, tensors, self.device)
        else:
            self.encoder = _prepare_encoder(cfg, tensors, self.device)
        feats = []
        for pts in progress(tensors, "train features", show_progress):
            centres = kernels.fps(pts, cfg.bank_groups, self.device)
            feats.append(self._features(pts, centres))
        feats = torch.cat(feats)
        self.feature_bank = MemoryBank(cfg.memory_size, cfg.proj_dim, cfg.seed).fit(feats)
        rows = _stats_rows(feats.shape[0], cfg.seed)
        d, _ = self.feature_bank.query(feats[torch.as_tensor(rows, device=feats.device)],
                                       k=min(2, len(self.feature_bank)))
        in_bank = np.isin(rows, self.feature_bank.source_rows.cpu().numpy())
        self.stats = {"feature": BranchStats.from_distances(leave_one_out(d.cpu().numpy(), in_bank))}
        if cfg.use_coordinates:
            coords = torch.cat(tensors)
            sel = kernels.coreset(coords, cfg.coord_memory_size, None, cfg.seed)
            self.coord_bank = coords[sel].float().contiguous()
            rows = _stats_rows(coords.shape[0], cfg.seed)
            d, _ = kernels.knn(coords[torch.as_tensor(rows, device=coords.device)], self.coord_bank,
                               min(2, self.coord_bank.shape[0]), self.device)
            in_bank = np.isin(rows, sel.cpu().numpy())
            self.stats["coord"] = BranchStats.from_distances(leave_one_out(d, in_bank))
        return self

    def _features(self, pts: torch.Tensor, centres: np.ndarray, return_radius: bool = False):
        from .encoding import group_features

        return group_features(self.encoder, pts, centres, self.config.group_size, self.config.precision,
                              return_radius=return_radius)

    # -- score ----------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if self.feature_bank is None:
            raise UserError("this Group3AD model is not fitted: call fit() or Group3AD.load()")

    def register(self, cloud) -> np.ndarray:
        """The cloud centred and registered to the template (as scored)."""
        return self.registration(cloud)[0]

    def registration(self, cloud) -> tuple[np.ndarray, RegistrationResult | None]:
        """(the cloud centred and registered (N,3), the RegistrationResult with its fitness;
        None when registration is disabled)."""
        self._check_fitted()
        pts = centred(points_of(cloud))
        if not self.config.registration.enabled:
            return pts, None
        result = self.registrar.register(pts)
        return self.registrar.apply(pts, result.transform), result

    def test_centres(self, registered: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.use_agcs:
            return kernels.agcs(registered, cfg.n_groups_test, cfg.alpha, self.device)
        return kernels.fps(registered, cfg.n_groups_test, self.device)

    def score_branches(self, cloud, registered: np.ndarray | None = None) -> dict:
        """Per-branch raw scores before fusion: {"feature": (point_scores (N,), object_score),
        "coord": (...)} (coord only with use_coordinates). ``registered``: the cloud already
        centred and registered (skips registration)."""
        self._check_fitted()
        cfg = self.config
        reg = self.register(cloud) if registered is None else registered
        pts = kernels.as_tensor(reg, self.device)
        centres = self.test_centres(reg)
        feats, radii = self._features(pts, centres, return_radius=True)
        group_scores, _ = self.feature_bank.query(feats, k=1)
        group_scores = group_scores[:, 0].cpu().numpy().astype(np.float64)
        _, nearest_centre = kernels.nearest(reg, reg[centres], self.device)
        point_scores = self.interpolate(reg, reg[centres], group_scores, nearest_centre)
        counted = supported_points(radii.cpu().numpy(), nearest_centre, cfg.support_ratio)
        out = {"feature": (point_scores, object_score(point_scores, counted))}
        if cfg.use_coordinates:
            d, _ = kernels.nearest(pts, self.coord_bank, self.device)
            out["coord"] = (d, object_score(d, counted))
        return out

    def interpolate(self, points: np.ndarray, centres: np.ndarray, group_scores: np.ndarray,
                    nearest_centre: np.ndarray | None = None) -> np.ndarray:
        """Group scores (G,) to points (N,): the nearest centre's (Reg3D-AD), or with
        ``interpolation="idw"`` the inverse-distance average over the ``idw_k`` nearest.
        ``nearest_centre``: (N,) each point's nearest centre, when already known."""
        if self.config.interpolation == "nearest" or len(centres) == 1:
            if nearest_centre is None:
                _, nearest_centre = kernels.nearest(points, centres, self.device)
            return group_scores[nearest_centre]
        d, idx = kernels.knn(points, centres, min(self.config.idw_k, len(centres)), self.device)
        w = 1.0 / np.maximum(d, 1e-12)
        return (w * group_scores[idx]).sum(1) / w.sum(1)

    def score(self, cloud) -> tuple[np.ndarray, float]:
        """(point_scores (N,) float64 in the cloud's point order, object_score): the branches
        fused with the training statistics (single-cloud fusion, fusion.fuse_train)."""
        return self.score_with_registration(cloud)[:2]

    def score_with_registration(self, cloud) -> tuple[np.ndarray, float, RegistrationResult | None]:
        """``score`` plus the cloud's RegistrationResult (None when registration is disabled):
        a fitness below ``registration.min_fitness`` means the cloud may not be aligned with
        the template, and its scores are then unreliable."""
        registered, result = self.registration(cloud)
        return (*fuse_train(self.score_branches(cloud, registered), self.stats), result)

    def state_dict(self) -> dict:
        self._check_fitted()
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "group3ad_version": __version__,
            "config": self.config.to_dict(),
            "encoder": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
            "feature_bank": _to_cpu(self.feature_bank.state_dict()),
            "coord_bank": None if self.coord_bank is None else self.coord_bank.cpu(),
            "template": None if self.registrar is None else self.registrar.state_dict(),
            "stats": {k: v.to_dict() for k, v in self.stats.items()},
        }

    def save(self, path: str) -> str:
        """One file: config, encoder weights, memory banks, template, fusion statistics."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    @classmethod
    def load(cls, path: str, device: str | None = None) -> "Group3AD":
        """Read a model file written by ``save``; UserError when it is missing, not a model
        file, or written by an incompatible version."""
        if not os.path.isfile(path):
            raise UserError(f"model file {path!r} does not exist")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"{path!r} is not a group3ad model file ({type(e).__name__})") from None
        if not isinstance(d, dict) or d.get("format") != MODEL_FORMAT:
            raise UserError(f"{path!r} is not a group3ad model file")
        if d.get("format_version") != MODEL_FORMAT_VERSION:
            raise UserError(
                f"{path!r} was written by group3ad {d.get('group3ad_version', '?')} in model format "
                f"{d.get('format_version')!r}; this group3ad ({__version__}) reads format "
                f"{MODEL_FORMAT_VERSION}: refit it with `group3ad fit`")
        cfg = Group3ADConfig.from_dict(d["config"])
        if device is not None:
            cfg.device = device
        model = cls(cfg)
        from .encoding import new_encoder

        model.encoder = new_encoder(cfg.seed)
        model.encoder.load_state_dict(d["encoder"])
        model.encoder.to(model.device).eval()
        model.feature_bank = MemoryBank.from_state_dict(d["feature_bank"], device=model.device)
        model.coord_bank = None if d["coord_bank"] is None else d["coord_bank"].to(model.device)
        if d["template"] is not None:
            model.registrar = TemplateRegistrar.from_state_dict(d["template"], cfg.registration)
        model.stats = {k: BranchStats(**v) for k, v in d["stats"].items()}
        return model


def _prepare_encoder(cfg, tensors, device):
    from .encoding import prepare_encoder

    return prepare_encoder(cfg, tensors, device)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
