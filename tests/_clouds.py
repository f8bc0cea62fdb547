"""Generated point clouds for the property, determinism and scale tests.

A cloud is described by a few drawn parameters (size, kind, scale, seed, dtype, memory layout)
and built with a seeded torch.Generator: hypothesis shrinks a failure to the smallest
parameters, and the same parameters always give the same points.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

# What sensor scans contain: plain surfaces, repeated points (scanner overlap), degenerate
# geometry (a single line or plane, all points identical), exact ties (integer grids) and
# tight clusters separated by large gaps.
KINDS = ("uniform", "duplicates", "collinear", "coplanar", "identical", "grid", "clusters")
SCALES = (1e-6, 1.0, 1e6)
LAYOUTS = ("contiguous", "row_strided", "transposed")
DTYPES = (torch.float32, torch.float64)


def make_cloud(n: int, kind: str, scale: float, seed: int, dtype=torch.float64, offset=(0.0, 0.0, 0.0),
               dim: int = 3) -> torch.Tensor:
    """(n, dim) contiguous points of the given kind, in dtype, built in float64 then rounded."""
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    if kind == "uniform":
        p = torch.rand(n, dim, generator=g, dtype=f64)
    elif kind == "duplicates":
        base = torch.rand(max(1, n // 3), dim, generator=g, dtype=f64)
        p = base[torch.randint(0, base.shape[0], (n,), generator=g)]
    elif kind == "collinear":
        direction = torch.randn(dim, generator=g, dtype=f64)
        p = torch.rand(n, 1, generator=g, dtype=f64) * direction / direction.norm()
    elif kind == "coplanar":
        p = plane_points(n, g, dim)[0]
    elif kind == "identical":
        p = torch.rand(1, dim, generator=g, dtype=f64).expand(n, dim).clone()
    elif kind == "grid":
        p = torch.randint(0, 4, (n, dim), generator=g).to(f64) / 4
    elif kind == "clusters":
        centres = torch.rand(3, dim, generator=g, dtype=f64)
        p = centres[torch.randint(0, 3, (n,), generator=g)] + 1e-3 * torch.rand(n, dim, generator=g, dtype=f64)
    else:
        raise ValueError(kind)
    p = p * scale + torch.tensor(offset[:dim] if dim <= 3 else [0.0] * dim, dtype=f64)
    return p.to(dtype)


def lumpy_surface(n: int, seed: int):
    """(n,3) float64 numpy: a closed, lumpy surface (the kind of part Real3D-AD scans)."""
    import numpy as np

    g = np.random.default_rng(seed)
    v = g.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = 10 * (1 + 0.2 * np.sin(3 * np.arctan2(v[:, 1], v[:, 0])) + 0.1 * v[:, 2])
    return v * r[:, None]


def plane_points(n: int, g: torch.Generator, dim: int = 3):
    """n points on a random plane through a random point, and the plane's unit normal."""
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(a)
    u, v, normal = q[:, 0], q[:, 1], q[:, 2]
    st_ = torch.rand(n, 2, generator=g, dtype=torch.float64)
    return st_[:, :1] * u + st_[:, 1:] * v + 0.1 * torch.rand(dim, generator=g, dtype=torch.float64), normal


def as_layout(p: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as p, stored contiguously or as a non-contiguous view."""
    if layout == "contiguous":
        return p.contiguous()
    if layout == "row_strided":  # every other row of a bigger buffer (a decimated scan)
        big = torch.full((2 * p.shape[0], p.shape[1]), float("nan"), dtype=p.dtype)
        big[::2] = p
        return big[::2]
    if layout == "transposed":  # column-major storage (e.g. from a (3,N) array)
        return p.t().contiguous().t()
    raise ValueError(layout)


def sizes(low: int = 1, high: int = 300):
    """Mostly tiny clouds (1-8 points: the edge cases), and some large enough for several
    spatial-index levels and parallel chunks."""
    small = st.integers(low, max(low, min(high, 8)))
    return st.one_of(small, st.integers(low, high)) if high > 8 else small


@st.composite
def clouds(draw, low: int = 1, high: int = 300, kinds=KINDS, dtypes=DTYPES, layouts=LAYOUTS):
    """A (n,3) point tensor, possibly a non-contiguous view, with its description."""
    n = draw(sizes(low, high))
    kind = draw(st.sampled_from(kinds))
    scale = draw(st.sampled_from(SCALES))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**20))
    layout = draw(st.sampled_from(layouts))
    far = draw(st.booleans())  # a large common offset: precision loss from subtracting big coordinates
    offset = (3.0 * scale, -7.0 * scale, 11.0 * scale) if far else (0.0, 0.0, 0.0)
    pts = as_layout(make_cloud(n, kind, scale, seed, dtype, offset), layout)
    return pts, dict(n=n, kind=kind, scale=scale, dtype=dtype, seed=seed, layout=layout, far=far)


def generic_radius(scale: float, factor: float) -> float:
    """A radius that is not a grid distance (grid points are 1/4 apart): no boundary ties."""
    return scale * factor * (1 + 1 / math.pi * 1e-3)
