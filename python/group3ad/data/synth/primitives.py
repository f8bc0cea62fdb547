"""Solids that sample their own surface: the building blocks of the procedural parts.

A ``Solid`` knows two things: ``sample(density, rng)`` returns points uniformly distributed on
its boundary (``density`` points per mm^2, area-weighted) with outward unit normals, and
``contains(points)`` tells which points lie strictly inside. Constructive solid geometry then
works on samples directly: the boundary of A union B is (boundary A outside B) plus (boundary B
outside A); the boundary of A minus B is (boundary A outside B) plus (boundary B inside A, normals
flipped). Uniform density survives the filtering, so no triangle mesh (and no mesh boolean) is
needed, and every normal is exact.
"""

from __future__ import annotations

import abc

import numpy as np


def dot(p: np.ndarray, v) -> np.ndarray:
    """Row-wise p . v for (N, 3) p, without BLAS (3x3 BLAS calls are slow on busy machines
    and may round differently between BLAS builds)."""
    return p[:, 0] * v[0] + p[:, 1] * v[1] + p[:, 2] * v[2]


def matmul(p: np.ndarray, m) -> np.ndarray:
    """p @ m for (N, 3) p and a 3x3 m, without BLAS."""
    m = np.asarray(m, np.float64)
    return p[:, 0, None] * m[0] + p[:, 1, None] * m[1] + p[:, 2, None] * m[2]


def contains_fast(solid, p) -> np.ndarray:
    """solid.contains(p), testing only the points inside the solid's bounding box."""
    lo, hi = solid.bounds()
    cand = np.flatnonzero(((p > lo) & (p < hi)).all(1))
    out = np.zeros(len(p), bool)
    if len(cand):
        out[cand] = solid.contains(p[cand])
    return out


def _count(area: float, density: float, rng) -> int:
    """Expected count area*density, randomly rounded so small faces are not biased."""
    x = area * density
    n = int(x)
    return n + int(rng.random() < x - n)


class Solid(abc.ABC):
    """A closed solid that samples its own surface and tests points for inside-ness."""

    @abc.abstractmethod
    def area(self) -> float:
        """Surface area."""

    @abc.abstractmethod
    def sample(self, density: float, rng) -> tuple[np.ndarray, np.ndarray]:
        """Surface points and outward unit normals, about area*density of them."""

    @abc.abstractmethod
    def contains(self, p: np.ndarray) -> np.ndarray:
        """(M,3) points -> (M,) bool: inside the solid."""

    @abc.abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (lo, hi) enclosing the solid."""

    def __or__(self, other):
        return Union(self, other)

    def __sub__(self, other):
        return Difference(self, other)


class Union(Solid):
    def __init__(self, *parts):
        self.parts = list(parts)

    def area(self):
        return sum(p.area() for p in self.parts)

    def sample(self, density, rng):
        pts, nrm = [], []
        for i, part in enumerate(self.parts):
            p, n = part.sample(density, rng)
            keep = np.ones(len(p), bool)
            for j, other in enumerate(self.parts):
                if j != i:
                    keep &= ~contains_fast(other, p)
            pts.append(p[keep])
            nrm.append(n[keep])
        return np.concatenate(pts), np.concatenate(nrm)

    def contains(self, p):
        out = np.zeros(len(p), bool)
        for part in self.parts:
            out |= contains_fast(part, p)
        return out

    def bounds(self):
        b = [p.bounds() for p in self.parts]
        return np.min([x[0] for x in b], 0), np.max([x[1] for x in b], 0)


class Difference(Solid):
    def __init__(self, base, *cutters):
        self.base, self.cutters = base, list(cutters)

    def area(self):
        return self.base.area() + sum(c.area() for c in self.cutters)

    def _in_cutters(self, p, skip=None):
        out = np.zeros(len(p), bool)
        for k, c in enumerate(self.cutters):
            if k != skip:
                out |= contains_fast(c, p)
        return out

    def sample(self, density, rng):
        p, n = self.base.sample(density, rng)
        keep = ~self._in_cutters(p)
        pts, nrm = [p[keep]], [n[keep]]
        for k, c in enumerate(self.cutters):
            p, n = c.sample(density, rng)
            keep = contains_fast(self.base, p) & ~self._in_cutters(p, skip=k)
            pts.append(p[keep])
            nrm.append(-n[keep])
        return np.concatenate(pts), np.concatenate(nrm)

    def contains(self, p):
        return contains_fast(self.base, p) & ~self._in_cutters(p)

    def bounds(self):
        return self.base.bounds()


class Transformed(Solid):
    """``solid`` rotated by the orthogonal matrix ``rot`` then moved by ``shift``."""

    def __init__(self, solid, rot=None, shift=(0.0, 0.0, 0.0)):
        self.solid = solid
        self.rot = np.eye(3) if rot is None else np.asarray(rot, np.float64)
        self.shift = np.asarray(shift, np.float64)

    def area(self):
        return self.solid.area()

    def sample(self, density, rng):
        p, n = self.solid.sample(density, rng)
        return matmul(p, self.rot.T) + self.shift, matmul(n, self.rot.T)

    def contains(self, p):
        return self.solid.contains(matmul(p - self.shift, self.rot))

    def bounds(self):
        lo, hi = self.solid.bounds()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        world = matmul(corners, self.rot.T) + self.shift
        return world.min(0), world.max(0)


def rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _pick(weights, n, rng):
    cum = np.cumsum(weights)
    return np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(cum) - 1)


class Extrusion(Solid):
    """A star-shaped polygon (counter-clockwise, star-shaped about ``centre``) in the xy plane,
    extruded from z0 to z1."""

    def __init__(self, polygon, z0, z1, centre=(0.0, 0.0)):
        self.poly = np.asarray(polygon, np.float64)
        self.c = np.asarray(centre, np.float64)
        self.z0, self.z1 = float(z0), float(z1)
        self.nxt = np.roll(self.poly, -1, axis=0)
        edge = self.nxt - self.poly
        self.len = np.linalg.norm(edge, axis=1)
        self.out = np.stack([edge[:, 1], -edge[:, 0]], 1) / self.len[:, None]
        a, b = self.poly - self.c, self.nxt - self.c
        self.tri = 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
        if (self.tri <= 0).any():
            raise ValueError("polygon: not counter-clockwise and star-shaped about centre")
        ang = np.arctan2(a[:, 1], a[:, 0])
        self.start = int(np.argmin(ang))
        self.ang = np.roll(ang, -self.start)
        if (np.diff(self.ang) <= 0).any():
            raise ValueError("polygon: vertex angles about centre are not increasing")

    def area(self):
        return self.len.sum() * (self.z1 - self.z0) + 2 * self.tri.sum()

    def sample(self, density, rng):
        h = self.z1 - self.z0
        n_side = _count(self.len.sum() * h, density, rng)
        e = _pick(self.len, n_side, rng)
        u = rng.random(n_side)[:, None]
        xy = self.poly[e] + u * (self.nxt[e] - self.poly[e])
        side = np.column_stack([xy, self.z0 + h * rng.random(n_side)])
        side_n = np.column_stack([self.out[e], np.zeros(n_side)])
        pts, nrm = [side], [side_n]
        for z, nz in ((self.z0, -1.0), (self.z1, 1.0)):
            n_cap = _count(self.tri.sum(), density, rng)
            t = _pick(self.tri, n_cap, rng)
            r1, r2 = rng.random(n_cap), rng.random(n_cap)
            s = np.sqrt(r1)
            w0, w1, w2 = 1 - s, s * (1 - r2), s * r2
            xy = w0[:, None] * self.c + w1[:, None] * self.poly[t] + w2[:, None] * self.nxt[t]
            pts.append(np.column_stack([xy, np.full(n_cap, z)]))
            nrm.append(np.tile([0.0, 0.0, nz], (n_cap, 1)))
        return np.concatenate(pts), np.concatenate(nrm)

    def bounds(self):
        lo, hi = self.poly.min(0), self.poly.max(0)
        return np.array([lo[0], lo[1], self.z0]), np.array([hi[0], hi[1], self.z1])

    def contains(self, p):
        inside = (p[:, 2] > self.z0) & (p[:, 2] < self.z1)
        d = p[:, :2] - self.c
        ang = np.arctan2(d[:, 1], d[:, 0])
        k = (np.searchsorted(self.ang, ang, side="right") - 1) % len(self.ang)
        e = (k + self.start) % len(self.poly)
        inside &= ((p[:, :2] - self.poly[e]) * self.out[e]).sum(1) < 0
        return inside


def polar_polygon(radius_fn, n=720, centre=(0.0, 0.0)):
    """Vertices of the star polygon r = radius_fn(theta), theta in [0, 2 pi)."""
    th = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = radius_fn(th)
    return np.column_stack([centre[0] + r * np.cos(th), centre[1] + r * np.sin(th)])


class Revolved(Solid):
    """Solid of revolution about z: radius ``rs[i]`` at height ``zs[i]`` (zs non-decreasing;
    equal heights make a flat annulus), closed by discs at both ends."""

    def __init__(self, zs, rs):
        self.zs, self.rs = np.asarray(zs, np.float64), np.asarray(rs, np.float64)
        if (np.diff(self.zs) < 0).any() or (self.rs < 0).any():
            raise ValueError("zs must be non-decreasing and rs non-negative")
        dz, dr = np.diff(self.zs), np.diff(self.rs)
        self.slant = np.hypot(dz, dr)
        self.seg_area = np.pi * (self.rs[:-1] + self.rs[1:]) * self.slant
        self.seg_n = np.stack([dz, -dr], 1) / np.maximum(self.slant, 1e-300)[:, None]

    def area(self):
        return self.seg_area.sum() + np.pi * (self.rs[0] ** 2 + self.rs[-1] ** 2)

    def sample(self, density, rng):
        n = _count(self.seg_area.sum(), density, rng)
        s = _pick(self.seg_area, n, rng)
        r1, r2 = self.rs[s], self.rs[s + 1]
        u = rng.random(n)
        dr = r2 - r1
        lin = np.abs(dr) < 1e-12
        # inverse CDF of a density proportional to the radius along the segment
        t = np.where(lin, u, (-r1 + np.sqrt(r1 * r1 + u * (r2 * r2 - r1 * r1))) / np.where(lin, 1.0, dr))
        r = r1 + t * dr
        z = self.zs[s] + t * (self.zs[s + 1] - self.zs[s])
        th = 2 * np.pi * rng.random(n)
        c, si = np.cos(th), np.sin(th)
        pts = [np.column_stack([r * c, r * si, z])]
        nrm = [np.column_stack([self.seg_n[s, 0] * c, self.seg_n[s, 0] * si, self.seg_n[s, 1]])]
        for z0, rad, nz in ((self.zs[0], self.rs[0], -1.0), (self.zs[-1], self.rs[-1], 1.0)):
            m = _count(np.pi * rad * rad, density, rng)
            rr = rad * np.sqrt(rng.random(m))
            th = 2 * np.pi * rng.random(m)
            pts.append(np.column_stack([rr * np.cos(th), rr * np.sin(th), np.full(m, z0)]))
            nrm.append(np.tile([0.0, 0.0, nz], (m, 1)))
        return np.concatenate(pts), np.concatenate(nrm)

    def bounds(self):
        r = self.rs.max()
        return np.array([-r, -r, self.zs[0]]), np.array([r, r, self.zs[-1]])

    def contains(self, p):
        z = p[:, 2]
        inside = (z > self.zs[0]) & (z < self.zs[-1])
        rho = np.hypot(p[:, 0], p[:, 1])
        return inside & (rho < np.interp(z, self.zs, self.rs))


def cylinder(radius, z0, z1) -> Revolved:
    return Revolved([z0, z1], [radius, radius])


def box(x0, x1, y0, y1, z0, z1) -> Extrusion:
    poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return Extrusion(poly, z0, z1, centre=((x0 + x1) / 2, (y0 + y1) / 2))
