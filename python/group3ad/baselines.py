"""Real3D-AD's handcrafted baselines, in the same fit / score_branches harness as Group3AD.

* ``PatchCore(FPFH)``: FPFH (normal radius 1.0, FPFH radius 2.5, Reg3D-AD's lengths) at
  ``n_groups`` FPS centres of each centred, unregistered training cloud; one memory bank reduced
  to ``memory_size`` by the coreset op; test: FPFH at the test cloud's FPS centres, nearest-bank
  distance per centre, copied to each point from its nearest centre; object score = max.
* ``PatchCore(FPFH+Raw)``: the above plus a second branch on the raw (centred, unregistered)
  coordinates (every training point, coreset to ``coord_memory_size``), the two branches fused
  like Group3AD's.
* ``BTF(FPFH)``: Back to the Feature: dense FPFH at every point of the voxel-downsampled cloud
  (voxel 0.5), all training descriptors kept (no coreset; a seeded random subset caps the bank at
  ``BTF_BANK_CAP``), nearest-descriptor distance per voxel point, copied to each point from its
  nearest voxel point; object score = max.

Object score, every method: the max over supported points (object_score.py, the same rule and
``support_ratio`` as Group3AD; a site's group radius is its distance to its ``group_size``-th
nearest point), so stray scanner points rank no method's clouds. ``support_ratio=0`` is the
published plain max.

The learned-encoder ablations (PatchCore with our encoder, Group3AD without IUN&IAN or AGCS) are
Group3AD configurations: see ``evaluate.METHODS``.
"""

from __future__ import annotations

import numpy as np
import torch

from . import kernels
from .config import Group3ADConfig
from .errors import UserError
from .fusion import BranchStats, fuse_train
from .object_score import object_score, supported_points
from .pipeline import _stats_rows, centred, leave_one_out, points_of
from .registration import _cloud, resolve_lengths

BTF_BANK_CAP = 200000


class FPFHMethod:
    """``kind``: "patchcore" (FPFH at FPS centres + coreset), "patchcore_raw" (plus a raw
    coordinate branch) or "btf" (dense voxel FPFH, full bank)."""

    KINDS = ("patchcore", "patchcore_raw", "btf")

    def __init__(self, config: Group3ADConfig, kind: str):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.config = config.validate()
        self.kind = kind
        self.lengths = None
        self.bank = None
        self.coord_bank = None
        self.stats: dict = {}

    def _fpfh(self, pts: np.ndarray, at: np.ndarray | None) -> torch.Tensor:
        L, r = self.lengths, self.config.registration
        nrm = kernels.normals(pts, L.normal_radius, r.normal_max_nn)
        return torch.from_numpy(kernels.fpfh(pts, nrm, L.fpfh_radius, r.fpfh_max_nn, indices=at)).float()

    def _sites(self, pts: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(site points, indices into pts or None for voxel sites) where descriptors live."""
        if self.kind == "btf":
            return np.asarray(_cloud(pts).voxel_down_sample(self.lengths.voxel).points), None
        idx = kernels.fps(pts, n_groups)
        return pts[idx], idx

    def _descriptors(self, pts: np.ndarray, n_groups: int) -> tuple[np.ndarray, torch.Tensor]:
        sites, idx = self._sites(pts, n_groups)
        if idx is None:
            return sites, self._fpfh(sites, None)
        return sites, self._fpfh(pts, idx)

    def fit(self, clouds, workspace=None, show_progress: bool = True) -> "FPFHMethod":
        cfg = self.config
        clouds = [centred(points_of(c)) for c in clouds]
        if not clouds:
            raise UserError("the training set is empty")
        self.lengths = resolve_lengths(cfg.registration, clouds[0])
        feats = torch.cat([self._descriptors(p, cfg.bank_groups)[1] for p in clouds])
        if self.kind == "btf":
            if feats.shape[0] > BTF_BANK_CAP:
                keep = np.sort(np.random.default_rng(cfg.seed).choice(feats.shape[0], BTF_BANK_CAP, replace=False))
                feats = feats[torch.as_tensor(keep)]
            self.bank_rows = np.arange(feats.shape[0])
        else:
            self.bank_rows = kernels.coreset(feats, cfg.memory_size, cfg.proj_dim, cfg.seed).numpy()
        self.bank = feats[torch.as_tensor(self.bank_rows)].contiguous()
        rows = _stats_rows(feats.shape[0], cfg.seed)
        d, _ = kernels.nn_search(feats[torch.as_tensor(rows)], self.bank, k=min(2, self.bank.shape[0]))
        in_bank = np.isin(rows, self.bank_rows)
        self.stats = {"feature": BranchStats.from_distances(leave_one_out(d.cpu().numpy(), in_bank))}
        if self.kind == "patchcore_raw":
            coords = torch.from_numpy(np.concatenate(clouds)).float()
            sel = kernels.coreset(coords, cfg.coord_memory_size, None, cfg.seed)
            self.coord_bank = coords[sel]
            rows = _stats_rows(coords.shape[0], cfg.seed)
            d, _ = kernels.knn(coords[torch.as_tensor(rows)], self.coord_bank, min(2, self.coord_bank.shape[0]))
            self.stats["coord"] = BranchStats.from_distances(leave_one_out(d, np.isin(rows, sel.numpy())))
        return self

    def score_branches(self, cloud, registered=None) -> dict:
        pts = centred(points_of(cloud))
        sites, feats = self._descriptors(pts, self.config.n_groups_test)
        d, _ = kernels.nn_search(feats, self.bank, k=1)
        site_scores = d[:, 0].cpu().numpy().astype(np.float64)
        _, nearest_site = kernels.nearest(pts, sites)
        point_scores = site_scores[nearest_site]
        counted = supported_points(self._site_radii(pts, sites), nearest_site, self.config.support_ratio)
        out = {"feature": (point_scores, object_score(point_scores, counted))}
        if self.kind == "patchcore_raw":
            dc, _ = kernels.nearest(pts, self.coord_bank)
            out["coord"] = (dc, object_score(dc, counted))
        return out

    def _site_radii(self, pts: np.ndarray, sites: np.ndarray) -> np.ndarray:
        """(S,) each site's distance to its ``group_size``-th nearest point: the group radius
        that Group3AD's object score uses to set stray points aside (object_score.py)."""
        if self.config.support_ratio <= 0:
            return np.ones(len(sites))
        d, _ = kernels.knn(sites, pts, min(self.config.group_size, len(pts)))
        return d[:, -1]

    def score(self, cloud) -> tuple[np.ndarray, float]:
        return fuse_train(self.score_branches(cloud), self.stats)
