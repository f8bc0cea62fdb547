"""Defects of the Real3D-AD kinds, applied to a dense oriented surface sample with exact labels.

All functions take the dense sample ``points`` (N, 3) and unit ``normals`` (N, 3) of a good part
(object frame, mm), the defect centre ``c`` on the surface and its normal ``nc``, and return
``(points, normals, labels)`` of the defective part's surface, labels uint8 1 = anomalous. The
labels come from the construction, never from a threshold on a comparison afterwards:

- bulge / sink: points move by ``depth * w(r)`` along ``nc`` with the smooth bump
  w = (1 - r^2/R^2)^3 (zero outside R, faded out on surfaces turned away from ``nc``); a point is
  anomalous when it moved by at least 10% of the depth.
- cut: the material inside a tool (the ball of radius R about c, above a plane ``depth`` below c)
  is removed: surface points inside the tool disappear, the tool's faces inside the part (a flat
  floor and a spherical wall) become new surface. Anomalous: the new faces, plus the remaining
  original points within ``rim`` (2 point spacings) of the removed region (exact distance to the
  tool), as Real3D-AD's ground truth labels the points around a missing region.
- add: a ball of material of radius R is attached with its top ``height`` above the surface;
  surface points inside it disappear, its own surface outside the part is added. Anomalous:
  the added points.

Inside/outside tests for the new faces use the dense sample itself: a point is inside the part
when it lies behind (against the normal of) its nearest surface sample.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .primitives import _count, dot

KINDS = ("bulge", "sink", "cut", "add")
LABEL_MIN_DISPLACEMENT = 0.1  # bulge/sink: anomalous when displaced by >= 10% of the depth


def _unit_sphere(n, rng):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _plane_basis(nc):
    a = np.eye(3)[int(np.argmin(np.abs(nc)))]
    u = np.cross(nc, a)
    u /= np.linalg.norm(u)
    return u, np.cross(nc, u)


LOCAL_SURFACE_POINTS = 4000


def _local(points, normals, c, reach):
    """The surface sample near c (within ``reach``), thinned to about LOCAL_SURFACE_POINTS points,
    with a kd-tree, for inside tests. Thinning matters: a query point a few spacings away from a
    dense surface has thousands of nearly equidistant neighbours, which makes exact kd-tree
    queries crawl; the inside test needs the surface's shape, not its sampling density. The
    samples are in random order, so a stride keeps a uniform random subset."""
    near = np.flatnonzero(np.linalg.norm(points - c, axis=1) < reach)
    near = near[:: max(1, -(-len(near) // LOCAL_SURFACE_POINTS))]
    return points[near], normals[near], cKDTree(points[near])


def _inside(q, lp, ln, tree):
    if len(q) == 0 or len(lp) == 0:
        return np.zeros(len(q), bool)
    _, i = tree.query(q, eps=0.5)  # any nearby surface sample decides the side
    return ((q - lp[i]) * ln[i]).sum(1) < 0


def bump(points, normals, c, nc, radius, depth):
    """Bulge (depth > 0) or sink (depth < 0) of support radius ``radius``."""
    d2 = ((points - c) ** 2).sum(1) / (radius * radius)
    w = np.where(d2 < 1, (1 - np.minimum(d2, 1)) ** 3, 0.0)
    w *= np.clip(dot(normals, nc) / 0.5, 0.0, 1.0)
    moved = points + (depth * w)[:, None] * nc
    labels = (w >= LABEL_MIN_DISPLACEMENT).astype(np.uint8)
    return moved, normals, labels


def distance_to_tool(q, c, nc, radius, depth):
    """Exact distance from q to the cut tool {|p - c| <= R} and {(p - c) . nc >= -depth}."""
    rel = q - c
    h = dot(rel, nc)
    r = np.linalg.norm(rel, axis=1)
    rho = np.sqrt(np.maximum(r * r - h * h, 0.0))
    a = np.sqrt(radius * radius - depth * depth)  # radius of the floor disc
    edge = np.hypot(rho - a, h + depth)
    with np.errstate(invalid="ignore", divide="ignore"):
        on_sphere = radius * h >= -depth * r  # the radial projection lies on the tool's cap
    sphere = np.where(on_sphere & (r > radius), r - radius, np.inf)
    floor = np.where((h < -depth) & (rho <= a), -depth - h, np.inf)
    dist = np.minimum(np.minimum(edge, sphere), floor)
    dist[(r <= radius) & (h >= -depth)] = 0.0
    return dist


def cut(points, normals, c, nc, radius, depth, density, rim, rng):
    """Removes the ball of ``radius`` about c above the plane ``depth`` below c."""
    depth = min(depth, 0.95 * radius)
    rel = points - c
    tool = (np.linalg.norm(rel, axis=1) < radius) & (dot(rel, nc) > -depth)
    lp, ln, tree = _local(points, normals, c, 2 * radius + rim)
    rho = np.sqrt(radius * radius - depth * depth)
    m = _count(np.pi * rho * rho, density, rng)
    rr, th = rho * np.sqrt(rng.random(m)), 2 * np.pi * rng.random(m)
    u, v = _plane_basis(nc)
    floor = c - depth * nc + (rr * np.cos(th))[:, None] * u + (rr * np.sin(th))[:, None] * v
    floor = floor[_inside(floor, lp, ln, tree)]
    dirs = _unit_sphere(_count(4 * np.pi * radius * radius, density, rng), rng)
    wall = c + radius * dirs
    keep = (dot(dirs, nc) * radius > -depth) & _inside(wall, lp, ln, tree)
    wall, wall_n = wall[keep], -dirs[keep]
    rest = ~tool
    labels = (distance_to_tool(points[rest], c, nc, radius, depth) <= rim).astype(np.uint8)
    pts = np.concatenate([points[rest], floor, wall])
    nrm = np.concatenate([normals[rest], np.tile(nc, (len(floor), 1)), wall_n])
    lab = np.concatenate([labels, np.ones(len(floor) + len(wall), np.uint8)])
    return pts, nrm, lab


def add(points, normals, c, nc, radius, height, density, rng):
    """Attaches a ball of ``radius`` whose top is ``height`` above the surface at c."""
    height = min(height, 1.9 * radius)
    b = c + (height - radius) * nc
    lp, ln, tree = _local(points, normals, c, 3 * radius)
    dirs = _unit_sphere(_count(4 * np.pi * radius * radius, density, rng), rng)
    blob = b + radius * dirs
    keep = ~_inside(blob, lp, ln, tree)
    blob, blob_n = blob[keep], dirs[keep]
    rest = np.linalg.norm(points - b, axis=1) >= radius
    pts = np.concatenate([points[rest], blob])
    nrm = np.concatenate([normals[rest], blob_n])
    lab = np.concatenate([np.zeros(int(rest.sum()), np.uint8), np.ones(len(blob), np.uint8)])
    return pts, nrm, lab
