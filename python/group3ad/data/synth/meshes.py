"""Real scanned and modelled meshes shipped with the package (``group3ad/assets/meshes``), and
area-weighted surface sampling of a triangle mesh. Licences: ``assets/meshes/README.md``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "meshes"

# category -> (file, largest extent in mm). Only permissively licensed meshes are shipped.
MESHES = {
    "airplane": ("airplane.ply", 36.0),
    "fish": ("blub_fish.ply", 30.0),
    "duck": ("bob_duck.ply", 28.0),
    "penguin": ("penguin.ply", 26.0),
    "cow": ("spot.ply", 32.0),
    "imu": ("adis16480.ply", 30.0),
}


@lru_cache(maxsize=None)
def _load(filename: str, extent: float):
    import open3d as o3d

    path = ASSET_DIR / filename
    mesh = o3d.io.read_triangle_mesh(str(path))
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.triangles, np.int64)
    if len(v) == 0 or len(f) == 0:
        raise FileNotFoundError(f"{path}: mesh asset missing or empty")
    lo, hi = v.min(0), v.max(0)
    v = (v - (lo + hi) / 2) * (extent / (hi - lo).max())  # centred, largest side = extent mm
    return v, f


class MeshSurface:
    """Uniform area-weighted sampling of a triangle mesh, normals interpolated from
    area-weighted vertex normals (smooth, so displacements along them stay smooth)."""

    def __init__(self, vertices, faces):
        self.v, self.f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
        a, b, c = self.v[self.f[:, 0]], self.v[self.f[:, 1]], self.v[self.f[:, 2]]
        cross = np.cross(b - a, c - a)
        self.tri_area = 0.5 * np.linalg.norm(cross, axis=1)
        vn = np.zeros_like(self.v)
        for k in range(3):
            np.add.at(vn, self.f[:, k], cross)
        self.vn = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-300)

    def area(self) -> float:
        return float(self.tri_area.sum())

    def sample(self, density: float, rng):
        n = int(round(self.area() * density))
        cum = np.cumsum(self.tri_area)
        t = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(cum) - 1)
        s, r2 = np.sqrt(rng.random(n)), rng.random(n)
        w = np.column_stack([1 - s, s * (1 - r2), s * r2])
        tri = self.f[t]
        pts = np.einsum("nk,nkd->nd", w, self.v[tri])
        nrm = np.einsum("nk,nkd->nd", w, self.vn[tri])
        return pts, nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-300)


def mesh_part(category: str, rng=None, rel: float = 0.015) -> MeshSurface:
    """The category's mesh, with per-axis scale variation of up to ``rel`` (part-to-part)."""
    filename, extent = MESHES[category]
    v, f = _load(filename, extent)
    if rng is not None and rel > 0:
        v = v * (1.0 + rel * (2 * rng.random(3) - 1))
    return MeshSurface(v, f)
