"""Stand-ins for group3ad_ext ops and the memory bank while a checkout lacks them.

The ops land from separate branches; until they do, the pipeline runs on these (same
definitions, slower). ``kernels`` picks the real op whenever ``group3ad_ext`` has it.
"""

from __future__ import annotations

import numpy as np
import torch


def _o3d_cloud(points):
    import open3d as o3d

    p = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else np.asarray(points, np.float64)
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))


def knn(query, points, k):
    q, p = query.double(), points.double()
    ds, ids = [], []
    for s in range(0, q.shape[0], 4096):
        d = torch.cdist(q[s:s + 4096], p).pow(2)
        dd, ii = torch.topk(d, k, dim=1, largest=False, sorted=True)
        ds.append(dd)
        ids.append(ii)
    return torch.cat(ds).to(points.dtype), torch.cat(ids)


def group(points, center_idx, k):
    _, idx = knn(points[center_idx], points, k)
    return points[idx] - points[center_idx][:, None, :], idx


def point_spacing(points):
    d, _ = knn(points, points, 2)
    return float(d[:, 1].sqrt().mean())


def fps(points, n, start_idx=0):
    p = points.detach().cpu().double().numpy()
    idx = np.empty(n, dtype=np.int64)
    dist = np.full(p.shape[0], np.inf)
    cur = int(start_idx)
    for i in range(n):
        idx[i] = cur
        np.minimum(dist, ((p - p[cur]) ** 2).sum(1), out=dist)
        cur = int(np.argmax(dist))
    return torch.from_numpy(idx)


def normals(points, radius=None, max_nn=30):
    import open3d as o3d

    pcd = _o3d_cloud(points)
    param = (o3d.geometry.KDTreeSearchParamKNN(max_nn) if not radius
             else o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    pcd.estimate_normals(param)
    return torch.from_numpy(np.asarray(pcd.normals).copy())


def fpfh(points, normals_, radius, max_nn=100, indices=None):
    import open3d as o3d

    pcd = _o3d_cloud(points)
    pcd.normals = o3d.utility.Vector3dVector(normals_.detach().cpu().double().numpy())
    f = o3d.pipelines.registration.compute_fpfh_feature(
        pcd, o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    out = torch.from_numpy(np.asarray(f.data).T.copy())
    return out if indices is None else out[indices]


def agcs(points, n_centers, alpha=0.2, variation_k=16):
    n_high = int(round(n_centers * alpha))
    spacing = point_spacing(points)
    nrm = normals(points, None, 30)
    feats = fpfh(points, nrm, 10 * spacing, 100)
    _, nb = knn(points, points, variation_k + 1)
    var = (feats[:, None, :] - feats[nb[:, 1:]]).norm(dim=2).sum(1)
    high = torch.argsort(-var, stable=True)[: max(n_high, int(0.2 * len(points)))]
    high = torch.sort(high).values
    c1 = high[fps(points[high], min(n_high, len(high)))] if n_high else torch.zeros(0, dtype=torch.long)
    c2 = fps(points, n_centers - len(c1))
    return torch.cat([c1, c2])


def nn_search(queries, bank, k=1):
    d, i = knn(queries.float(), bank.float(), k)
    return d.clamp_min(0).sqrt().float(), i


def coreset(features, n_select, proj_dim=128, start_idx=0, seed=0):
    x = features.float()
    if x.shape[1] > proj_dim:
        g = torch.Generator().manual_seed(seed)
        x = x @ torch.randn(x.shape[1], proj_dim, generator=g)
    return fps(x, n_select, start_idx)


class MemoryBank:
    def __init__(self, memory_size=10000, proj_dim=128, seed=0):
        self.memory_size, self.proj_dim, self.seed = memory_size, proj_dim, seed
        self.bank = None

    def fit(self, features):
        n = min(self.memory_size, features.shape[0])
        sel = coreset(features, n, self.proj_dim, 0, self.seed) if n < features.shape[0] else torch.arange(n)
        self.bank = features[sel].float().contiguous()
        return self

    def query(self, x, k=1):
        return nn_search(x.to(self.bank.device), self.bank, k)

    def state_dict(self):
        return {"memory_size": self.memory_size, "proj_dim": self.proj_dim, "seed": self.seed,
                "bank": self.bank.cpu()}

    @classmethod
    def from_state_dict(cls, d):
        m = cls(d["memory_size"], d["proj_dim"], d["seed"])
        m.bank = d["bank"]
        return m
