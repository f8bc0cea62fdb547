"""Scanner simulation: one-sided visibility, sensor noise and random poses."""

from __future__ import annotations

import numpy as np

from .primitives import dot


def random_direction(rng) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def random_rotation(rng) -> np.ndarray:
    """Uniformly distributed rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _basis(view: np.ndarray):
    a = np.eye(3)[int(np.argmin(np.abs(view)))]
    u = np.cross(view, a)
    u /= np.linalg.norm(u)
    return u, np.cross(view, u)


def visible(points, normals, view, spacing: float, min_cos: float = 0.2) -> np.ndarray:
    """Points a distant (orthographic) scanner looking along ``-view`` sees.

    A z-buffer of pixel size 2 * ``spacing`` keeps, per pixel, the points within a tolerance of
    the nearest depth (every sample occludes, grazing or back-facing ones too); the tolerance
    grows with the surface's slope inside a pixel. Points whose
    normal is within arccos(min_cos) of grazing are dropped, as structured-light scanners miss
    them. ``view`` is the unit direction from the object towards the scanner.
    """
    view = np.asarray(view, np.float64)
    cosang = dot(normals, view)
    facing = cosang > min_cos
    u, v = _basis(view)
    pix = 2.0 * spacing
    ix = np.floor(dot(points, u) / pix).astype(np.int64)
    iy = np.floor(dot(points, v) / pix).astype(np.int64)
    ix -= ix.min()
    iy -= iy.min()
    key = ix * (iy.max() + 1) + iy
    depth = dot(points, view)
    zbuf = np.full(int(key.max()) + 1, -np.inf)
    np.maximum.at(zbuf, key, depth)  # every surface point occludes, facing or not
    c = np.clip(cosang, min_cos, 1.0)
    tol = pix * np.sqrt(1 - c * c) / c + 2.0 * spacing
    return facing & (depth >= zbuf[key] - tol)


def add_noise(points, sigma: float, rng) -> np.ndarray:
    return points + rng.normal(scale=sigma, size=points.shape)
