"""Reading one point-cloud file for ``group3ad score``, and writing a scored cloud as PLY."""

from __future__ import annotations

import os

import numpy as np

from .errors import UserError


def read_points(path: str) -> np.ndarray:
    """(N,3) float64 points of a .pcd/.ply (Open3D) or .txt/.xyz (first 3 columns) file; rows
    with NaN are dropped."""
    if not os.path.isfile(path):
        raise UserError(f"point-cloud file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".pcd", ".ply"):
        import open3d as o3d

        pts = np.asarray(o3d.io.read_point_cloud(path).points, dtype=np.float64)
    elif ext in (".txt", ".xyz", ".csv"):
        try:
            pts = np.loadtxt(path, delimiter="," if ext == ".csv" else None, ndmin=2)[:, :3]
        except (ValueError, IndexError) as e:
            raise UserError(f"{path!r} is not a text point cloud (x y z per line): {e}") from None
    else:
        raise UserError(f"{path!r}: unsupported point-cloud format {ext!r} (use .pcd, .ply, .txt)")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise UserError(f"{path!r} holds no points")
    return pts


def score_colours(scores: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(N,3) uint8 colours of the 'jet' colour map over [lo, hi] (default: the scores' range)."""
    import matplotlib

    s = np.asarray(scores, dtype=np.float64)
    lo = float(s.min()) if lo is None else lo
    hi = float(s.max()) if hi is None else hi
    t = np.clip((s - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(s)
    return (matplotlib.colormaps["jet"](t)[:, :3] * 255).round().astype(np.uint8)


def write_scored_ply(path: str, points: np.ndarray, scores: np.ndarray) -> str:
    """Binary PLY: x y z (float32), red green blue (uint8, the score through 'jet') and the raw
    score as a float32 vertex property ``anomaly_score``."""
    n = len(points)
    rec = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                             ("green", "u1"), ("blue", "u1"), ("anomaly_score", "<f4")])
    rec["x"], rec["y"], rec["z"] = (np.asarray(points, dtype=np.float32).T)
    rgb = score_colours(scores)
    rec["red"], rec["green"], rec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    rec["anomaly_score"] = np.asarray(scores, dtype=np.float32)
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {n}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              "property float anomaly_score\nend_header\n")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return path
